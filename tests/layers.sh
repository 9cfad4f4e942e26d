#!/bin/sh
# Checks the layering of src/ against src/layers.map (see tests/layers.py).
exec /usr/bin/python3 "$(dirname "$0")/layers.py" "${SLUICE_SRCDIR:-$(dirname "$0")/..}/src"
