"""The demo (`make demo`): `python3 -m demo.demo` from the checkout's root; see demo.py."""
