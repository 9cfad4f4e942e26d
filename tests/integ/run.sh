#!/bin/sh
# Integration tests: see README.md.  Environment: SLUICE (broker binary),
# SLUICE_SRCDIR, INTEG_BROKER=mosquitto to test mosquitto instead.
exec /usr/bin/python3 "$(dirname "$0")/runner.py" "$@"
