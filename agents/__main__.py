"""`python3 -m agents NAME`: the meta-data of agent NAME as its declarations make it (what
`make metadata` and the package's build write to the files launch serves)."""
import sys

from agents import MODULES, declarations

if len(sys.argv) != 2 or sys.argv[1] not in MODULES:
    sys.exit(f"usage: python3 -m agents {{{'|'.join(MODULES)}}}")
sys.stdout.write(declarations(sys.argv[1]).metadata())
