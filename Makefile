# kuth-resource-agents: run every target as root on a Debian 12 node or test machine.
PYTHON := /usr/bin/python3
# What the agents need at run time, and what the tests and benchmarks drive.
RUNTIME_PACKAGES := python3 iproute2
# The lab (lab/: namespaces, cluster, clients), under the tests, the demo and the benchmarks;
# python3-psutil for its questions about processes (lab/processes.py), never the agents'.
LAB_PACKAGES := $(RUNTIME_PACKAGES) python3-psutil
TEST_PACKAGES := $(LAB_PACKAGES) python3-pytest python3-lxml iputils-ping resource-agents libxml2-utils tcpdump haproxy python3-hypothesis \
	procps util-linux man-db
BENCH_PACKAGES := $(TEST_PACKAGES) time python3-requests
# The one-machine Pacemaker cluster of the lab (lab/cluster.py): tests, demo, benchmarks; both
# shells operators use, crmsh and pcs (its resource and constraint commands need no pcsd).
# pacemaker-cli-utils (crm_mon, cibadmin, crm_resource, attrd_updater) is only a Recommends of
# Debian 13's pacemaker.
CLUSTER_PACKAGES := pacemaker pacemaker-cli-utils corosync crmsh pcs
# The failover benchmark: the cluster's packages, keepalived to compare with, and the plot.
FAILOVER_PACKAGES := $(TEST_PACKAGES) $(CLUSTER_PACKAGES) keepalived python3-matplotlib
# The scale benchmark: the cluster's packages and the plot.
SCALE_PACKAGES := $(TEST_PACKAGES) $(CLUSTER_PACKAGES) python3-matplotlib
# The demo's cluster: the agents' needs, HAProxy and the cluster stack (curl to explore it).
DEMO_PACKAGES := $(LAB_PACKAGES) haproxy $(CLUSTER_PACKAGES) curl
# Building the Debian package (its Build-Depends; dpkg-buildpackage also wants build-essential,
# which a minimal Debian lacks), checking it, and its install tests; tools/build-deb copies the
# files git tracks.
DEB_PACKAGES := build-essential debhelper dh-python pybuild-plugin-pyproject python3-setuptools \
	python3-wheel lintian debootstrap dpkg-dev zstd git

.PHONY: demo check check-here check-debian13 check-unit deps deb bench bench-failover bench-scale soak \
	metadata clean

## check: the whole test suite on this machine, then (unless it is Debian 13 itself) again in a
## minimal Debian 13 root (tools/debian13-root); ends with each release's pass count
check:
	tools/check-releases

## check-here: install what the tests need, then run the whole test suite on this machine only
check-here: deps
	@. /etc/os-release; echo "check-here: $$PRETTY_NAME, $$($(PYTHON) -V), $$(haproxy -v | head -1 | cut -d' ' -f1-3)"
	$(PYTHON) -m pytest -p no:cacheprovider -rfEs tests

## check-unit: the unit tier alone (tests/conftest.py), in seconds, as any user: no root, no
## namespaces, nothing installed (the test packages must be there: `make deps`, as root)
check-unit:
	$(PYTHON) -m pytest -p no:cacheprovider -q -m unit tests

## check-debian13: the whole test suite in the Debian 13 root only (tools/debian13-root)
check-debian13:
	tools/debian13-root make --no-print-directory check-here

deps:
	tools/install-packages $(TEST_PACKAGES) $(DEMO_PACKAGES) $(DEB_PACKAGES)

## demo: build the package, run its agents in a Pacemaker cluster on this machine while a
## client sends traffic through the VIP; ARGS="--nodes 3", ARGS="--keep" (see demo/demo.py)
demo: deb
	tools/install-packages $(DEMO_PACKAGES)
	$(PYTHON) -m demo.demo $(ARGS)

## deb: build dist/kuth-resource-agents_<version>_all.deb (and the source package) from a clean copy
deb:
	tools/install-packages $(DEB_PACKAGES)
	tools/build-deb

## bench: start-up and action times of our agents against the reference agents
bench:
	tools/install-packages $(BENCH_PACKAGES)
	$(PYTHON) -m bench.agent_speed
	$(PYTHON) -m bench.haproxy_speed
	$(PYTHON) -m bench.dependency_cost

## bench-failover: outages through the VIP (move, node loss, haproxy kill -9, reload, a broken
## haproxy.cfg applied, a VIP parameter changed) for our agents, heartbeat's IPaddr2 and
## keepalived, in a real cluster (about 30 minutes)
bench-failover:
	tools/install-packages $(FAILOVER_PACKAGES)
	$(PYTHON) -m bench.failover

## bench-scale: idle long-lived connections (100 to 50,000) through the VIP at a planned move
## and a node loss, K VIPs (1 to 50) on one node at rest, and the hand-over's cost on attrd and
## the ring, for ocf:kuth:IPaddr2 and ocf:heartbeat:IPaddr2 in a real cluster (about 35 minutes);
## a subset: ARGS="--connections 100,2000 --vips 1,10 --ring ''" (see bench/scale.py)
bench-scale:
	tools/install-packages $(SCALE_PACKAGES)
	$(PYTHON) -m bench.scale $(ARGS)

## soak: random events (moves, crashes, partitions, reloads...) on the lab's 2- and 3-node
## clusters with invariants checked after each; MINUTES=30 by default, SEED=S to repeat a run
MINUTES ?= 30
soak:
	tools/install-packages $(TEST_PACKAGES) $(CLUSTER_PACKAGES)
	$(PYTHON) -m soak.soak --minutes $(MINUTES) $(if $(SEED),--seed $(SEED)) \
	    --output bench/results/soak.md

## metadata: regenerate metadata/ from the agents' declarations
metadata:
	for agent in $$(find agents -maxdepth 1 -type f -perm -u+x -printf '%f\n'); do \
	    $(PYTHON) -B -S -m agents $$agent > metadata/$$agent.xml; done

clean:
	rm -rf build dist .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
