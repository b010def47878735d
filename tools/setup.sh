#!/usr/bin/env bash
# Set up everything on a fresh Linux machine: a virtual environment with the project and its
# tools, the face models (taken from the pinned mediapipe wheel and checked by sha256) and the
# sample portrait. With --test, also the Debian packages the test suite uses (a real Mosquitto
# broker, its command-line clients, systemd-analyze, Xvfb and xdotool). Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}

if [[ "${1:-}" == "--test" ]]; then
    need=()
    command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || need+=(mosquitto)
    command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
    command -v systemd-analyze >/dev/null || need+=(systemd)
    command -v Xvfb >/dev/null || need+=(xvfb)          # the kiosk window test runs on a virtual screen
    command -v xdotool >/dev/null || need+=(xdotool)
    if ((${#need[@]})); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "setup: the tests need the Debian packages: ${need[*]} (run as root, or install them)" >&2
            exit 1
        fi
        echo "setup: installing Debian packages: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat pyproject.toml tools/constraints.txt | sha256sum | cut -c1-16)-$EXTRAS"
if [[ ! -f "$stamp" ]]; then
    echo "setup: installing the project ($EXTRAS extra) into $VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    constraints=()
    if [[ "$EXTRAS" == *dev* || "$EXTRAS" == *export* ]]; then
        constraints=(-c tools/constraints.txt)  # known-good versions: a fast, reproducible resolve
    fi
    "$VENV/bin/python" -m pip install --quiet "${constraints[@]}" -e ".[$EXTRAS]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
"$VENV/bin/portrait" setup
