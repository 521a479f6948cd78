"""Facts read from the world before planning: WSClean's option list, MS metadata, MS sizes.

Each reader is small and slow on purpose only where it must be (a WSClean subprocess,
casacore): the core takes their answers as plain values, so it stays pure.
"""
