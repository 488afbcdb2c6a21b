"""Imported last by `make mutate`'s fork server (scripts/mutate.py writes it at the end of the preload list).

mutmut freezes the garbage collector's objects before it starts its fork server, but the modules the server then
preloads are not frozen: every mutant's child walked them again in each collection, pytest's own at its end
included (0.35 s of a one-second child), and copied the pages it touched. Freezing them once here spares both."""
import gc

gc.freeze()
