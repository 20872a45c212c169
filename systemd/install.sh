#!/bin/sh
# laneagent installer for a booth computer: `sudo make install`, `sudo make uninstall`.
#
#   install    program in a virtual environment under /opt/laneagent, the `laneagent`
#              command in /usr/local/bin, the laneagent system user (group dialout),
#              /etc/laneagent/agent.toml from the example when there is none (never
#              overwritten), /var/lib/laneagent (0700), the systemd unit and the udev rule.
#   uninstall  removes the program, the command, the unit and the udev rule; keeps the
#              configuration, the data (undelivered events may be in it) and the user.
#
# Safe to run again: every step checks what is there first. Environment:
#   DESTDIR=/tmp/root   stage everything under that root instead of / (tests, packaging):
#                       no user is created, nothing is chowned, systemctl and udevadm are not run
#   PYTHON=python3.11   the interpreter for the virtual environment (3.11 or newer)
#   PIP_ARGS="..."      extra pip options, e.g. an offline booth:
#                       PIP_ARGS="--no-index --find-links /media/usb/wheels"
set -eu

ACTION=${1:-}
DESTDIR=${DESTDIR:-}
PYTHON=${PYTHON:-python3}
PIP_ARGS=${PIP_ARGS:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)

OPT=/opt/laneagent
ETC=/etc/laneagent
VAR=/var/lib/laneagent
UNIT=/etc/systemd/system/laneagent.service
RULES=/etc/udev/rules.d/99-laneagent-readers.rules
CMD=/usr/local/bin/laneagent
USER_NAME=laneagent

say() { printf '%s\n' "laneagent install: $*"; }
die() { printf '%s\n' "laneagent install: $*" >&2; exit 1; }

real_root() { [ -z "$DESTDIR" ]; }

check_root() {
    if real_root && [ "$(id -u)" != 0 ]; then
        die "must run as root: sudo make $ACTION"
    fi
    if [ -n "$DESTDIR" ]; then
        case "$DESTDIR" in /*) ;; *) die "DESTDIR must be an absolute path, not '$DESTDIR'" ;; esac
        say "DESTDIR=$DESTDIR: staging only; not creating the user, not chowning, not running systemctl or udevadm"
    fi
}

have_user() { real_root && getent passwd "$USER_NAME" >/dev/null 2>&1; }

# --- install --------------------------------------------------------------------------------
install_program() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "laneagent needs Python 3.11 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1). Run: PYTHON=python3.11 make install"
    venv="$DESTDIR$OPT/venv"
    if [ ! -x "$venv/bin/python" ]; then
        say "creating the virtual environment $OPT/venv"
        install -d -m 0755 "$DESTDIR$OPT"
        "$PYTHON" -m venv "$venv" || die "cannot create $OPT/venv: apt-get install -y python3-venv"
    else
        say "updating the virtual environment $OPT/venv"
    fi
    # Build from a clean copy: the source tree (and its .venv) stays as it was.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cp -R "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/agent" "$SRC/simulators" "$work/"
    mkdir -p "$work/config" && cp "$SRC/config/agent.example.toml" "$work/config/"  # pyproject's data-files
    find "$work" -name __pycache__ -prune -exec rm -rf {} +
    # shellcheck disable=SC2086  # PIP_ARGS is a list of options on purpose
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet $PIP_ARGS "$work" \
        || die "pip could not install laneagent: check the network or PIP_INDEX_URL, or use PIP_ARGS=\"--no-index --find-links DIR\""
    install -m 0644 "$SRC/README.md" "$DESTDIR$OPT/README.md"
    install -m 0644 "$SRC/config/agent.example.toml" "$DESTDIR$OPT/agent.example.toml"
    install -d -m 0755 "$DESTDIR$(dirname "$CMD")"
    ln -sfn "$OPT/venv/bin/laneagent" "$DESTDIR$CMD"
    say "program installed: $OPT (command: $CMD)"
}

install_user() {
    if ! real_root; then
        return
    fi
    if getent passwd "$USER_NAME" >/dev/null 2>&1; then
        usermod -a -G dialout "$USER_NAME"
        say "user $USER_NAME exists; made sure it is in group dialout"
    else
        useradd --system --user-group --groups dialout --home-dir "$VAR" --no-create-home \
            --shell /usr/sbin/nologin --comment "laneagent lane agent" "$USER_NAME"
        say "created system user $USER_NAME (groups: $USER_NAME, dialout)"
    fi
}

install_config() {
    install -d -m 0750 "$DESTDIR$ETC"
    if have_user; then chown "root:$USER_NAME" "$DESTDIR$ETC"; fi
    if [ -e "$DESTDIR$ETC/agent.toml" ]; then
        say "kept the existing $ETC/agent.toml (never overwritten; the new example is $OPT/agent.example.toml)"
        CONFIG_NEW=0
    else
        install -m 0640 "$SRC/config/agent.example.toml" "$DESTDIR$ETC/agent.toml"
        if have_user; then chown "root:$USER_NAME" "$DESTDIR$ETC/agent.toml"; fi
        say "created $ETC/agent.toml from the example: edit it for this lane before starting"
        CONFIG_NEW=1
    fi
}

install_state() {
    install -d -m 0700 "$DESTDIR$VAR"
    chmod 0700 "$DESTDIR$VAR"
    if have_user; then chown "$USER_NAME:$USER_NAME" "$DESTDIR$VAR"; fi
    say "state directory $VAR (0700${DESTDIR:+, owner not set under DESTDIR})"
}

install_units() {
    install -d -m 0755 "$DESTDIR$(dirname "$UNIT")" "$DESTDIR$(dirname "$RULES")"
    install -m 0644 "$SRC/systemd/laneagent.service" "$DESTDIR$UNIT"
    install -m 0644 "$SRC/systemd/99-laneagent-readers.rules" "$DESTDIR$RULES"
    say "installed $UNIT and $RULES"
    real_root || return 0
    if command -v udevadm >/dev/null 2>&1; then
        udevadm control --reload && udevadm trigger --subsystem-match=tty \
            || say "udevadm could not reload the rules (no udev here?): they apply at the next boot"
    fi
    if command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload 2>/dev/null; then
        systemctl enable laneagent >/dev/null 2>&1 && say "enabled laneagent.service (starts at boot)"
        if [ "$CONFIG_NEW" = 0 ]; then
            systemctl try-restart laneagent && say "restarted laneagent if it was running (upgrade)"
        fi
    else
        say "systemd is not running here: start the daemon by hand (laneagent run) or on a systemd host"
    fi
}

do_install() {
    check_root
    install_program
    install_user
    install_config
    install_state
    install_units
    say "done. Next:"
    if [ "${CONFIG_NEW:-0}" = 1 ]; then
        say "  1. edit $ETC/agent.toml (lane, readers, back ends); readers: see $RULES for /dev/rfid-* names"
        say "  2. sudo laneagent doctor        (every check should PASS)"
        say "  3. sudo systemctl start laneagent && laneagent status"
    else
        say "  sudo laneagent doctor && laneagent status"
    fi
}

# --- uninstall ------------------------------------------------------------------------------
do_uninstall() {
    check_root
    if real_root && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now laneagent >/dev/null 2>&1 || true
    fi
    rm -f "$DESTDIR$UNIT" "$DESTDIR$RULES"
    if [ -L "$DESTDIR$CMD" ] || [ -e "$DESTDIR$CMD" ]; then rm -f "$DESTDIR$CMD"; fi
    rm -rf "$DESTDIR$OPT"
    if real_root; then
        if command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload 2>/dev/null || true; fi
        if command -v udevadm >/dev/null 2>&1; then udevadm control --reload 2>/dev/null || true; fi
    fi
    say "removed $OPT, $CMD, $UNIT and $RULES"
    say "kept $ETC (configuration), $VAR (data: it may hold events not yet delivered) and the user $USER_NAME"
    say "to remove those too, once the back ends have everything: sudo rm -rf $ETC $VAR && sudo userdel $USER_NAME"
}

case "$ACTION" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) die "usage: $0 install|uninstall   (DESTDIR=/staging/root to stage instead of installing)" ;;
esac
