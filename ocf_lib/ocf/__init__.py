"""The OCF framework: what every agent needs and nothing else.

codes (exit codes, OcfError, and the library's failures by meaning, each with its code),
params (typed parameters from OCF_RESKEY_*), agent (declarations, action dispatch, exit
reasons), metadata (the meta-data XML, made from the declarations), log (messages the way
Pacemaker reads them), state (the per-resource state directory under HA_RSCTMP, with its
lock).
"""
