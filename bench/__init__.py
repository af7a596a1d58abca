"""The benchmarks (`make bench`, `make bench-failover`): run from the checkout's root as
`python3 -m bench.NAME`; see bench/README.md."""
