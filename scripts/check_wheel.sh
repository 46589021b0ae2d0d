#!/usr/bin/env bash
# Build a wheel of this repository, install it into a fresh venv outside the repository
# (reusing the site packages of $PYTHON's environment for torch & co.: a .pth file in the new
# venv points at them, since `venv --system-site-packages` of a venv's python would only see
# the base interpreter's), and from $WORK run
#   cimlab station check --station emulated   (and emulated-discrete)
#   cimlab characterize <bundled quick plan> --check   (the whole plan against the station)
#   cimlab characterize <bundled quick plan> --only programming_error --out $WORK/x.h5
#   cimlab report $WORK/x.h5
# (one experiment: the whole quick plan runs from the repository in the test suite)
# Usage: WORK=/tmp/wheelcheck PYTHON=/path/to/venv/bin/python bash scripts/check_wheel.sh
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-$(mktemp -d /tmp/cimlab-wheel.XXXXXX)}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$WORK/whl"
unset PYTHONPATH
"$PYTHON" -m pip wheel "$REPO" -w "$WORK/whl" --no-deps -q
PARENT_SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# no pip of its own (ensurepip takes seconds): $PYTHON's pip installs into it (--python)
"$PYTHON" -m venv --without-pip "$WORK/venv"
NEW_SITE="$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# a path line only: .pth files inside PARENT_SITE (an editable cimlab) are not processed
echo "$PARENT_SITE" > "$NEW_SITE/zz_parent_site.pth"
"$PYTHON" -m pip --python "$WORK/venv/bin/python" install -q --no-deps --force-reinstall \
    "$WORK"/whl/cimlab-*.whl
cd "$WORK"
CIMLAB="$WORK/venv/bin/cimlab"
"$WORK/venv/bin/python" -c "import cimlab, sys; assert '$REPO' not in cimlab.__file__, cimlab.__file__; print('cimlab from', cimlab.__file__)"
"$CIMLAB" station check --station emulated
"$CIMLAB" station check --station emulated-discrete
PLAN="$("$WORK/venv/bin/python" -c 'from cimlab.procedures.plans import bundled_plan; print(bundled_plan("quick"))')"
"$CIMLAB" characterize "$PLAN" --station emulated --check
"$CIMLAB" characterize "$PLAN" --station emulated --only programming_error --out "$WORK/x.h5" -q
"$CIMLAB" report "$WORK/x.h5" --out "$WORK/report"
echo "WHEEL CHECK OK"
