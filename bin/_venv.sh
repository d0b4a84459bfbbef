# Sourced by bin/run and bin/test: makes .venv (Python 3.11+) and installs the
# given requirements file whenever the requirements change.
requirements=$1
if [ ! -x .venv/bin/python ]; then
    python=""
    for candidate in python3.11 python3 python; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
            python=$candidate
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "Python 3.11 or newer is needed (python3.11 or python3 on PATH)." >&2
        exit 1
    fi
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$requirements")"
if [ ! -f "$stamp" ]; then
    echo "Installing $requirements into .venv (the first time takes a few minutes)..."
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$requirements"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
