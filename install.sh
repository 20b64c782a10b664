#!/bin/sh
# Installs Switchyard as a systemd service, or upgrades it in place.
#
#   curl -fsSL <url>/install.sh | sudo sh
#   sudo sh install.sh [options]          (sh install.sh --help for the options)
#
# POSIX sh; never asks a question unless standard input is a terminal.
set -eu

DEFAULT_BASE_URL="https://github.com/switchyard-hub/switchyard/releases/latest/download"
SERVICE=switchyard
SVC_USER=switchyard

usage() {
  cat <<'EOF'
Usage: install.sh [options]

Installs (or upgrades) the Switchyard binary, a "switchyard" system user, the data
folder /var/lib/switchyard and a systemd service, starts it and waits for /healthz.

Options:
  --binary PATH     install this file instead of downloading (checked against the
                    SHA256SUMS beside it, or --sha256sums FILE)
  --sha256sums FILE checksums to check --binary against
  --base-url URL    where to download switchyard-linux-<arch> and SHA256SUMS from
                    (default: $SWITCHYARD_BASE_URL, else the project's release downloads)
  --prefix DIR      install the binary as DIR/bin/switchyard (default /usr/local)
  --root DIR        install into DIR as if it were / (an image): the service is
                    enabled there, not started; set SYSTEMCTL to a command that
                    manages that root's services to start it and check it (tests)
  --arch ARCH       x64 or arm64 instead of this machine's (with --root, for an image)
  --port N          HTTP port of the service (default 8888, or the port already set;
                    443 with --domain)
  --domain NAME     serve HTTPS for NAME (NAME[,NAME]) with a certificate from
                    Let's Encrypt (ACME HTTP-01): listens on 443, and on 80 for the
                    challenge and the redirect to HTTPS; NAME must point at this box
  --email ADDR      contact address for the Let's Encrypt account (with --domain)
  --no-start        install and enable, but do not start (or restart) the service
  --no-systemd      do not set up a service; print how to run it by hand
  --health-timeout S  seconds to wait for /healthz after a start (default 60)
  --uninstall       stop and remove the service and the binary; keep the data
  --purge           with --uninstall: also remove /var/lib/switchyard and the user
  --yes             do not ask before --purge (never asked off a terminal)
  -h, --help        this help
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# ---- options
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi; }
parse_args() {
  BINARY="" SUMS="" BASE_URL="${SWITCHYARD_BASE_URL:-$DEFAULT_BASE_URL}" PREFIX="" ROOT="" PORT="" ARCH=""
  NO_START=0 NO_SYSTEMD=0 UNINSTALL=0 PURGE=0 YES=0 HEALTH_TIMEOUT=60
  TLS_DOMAIN="" TLS_EMAIL=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --binary) need_arg "$@"; BINARY=$2; shift 2 ;;
      --sha256sums) need_arg "$@"; SUMS=$2; shift 2 ;;
      --base-url) need_arg "$@"; BASE_URL=$2; shift 2 ;;
      --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
      --root) need_arg "$@"; ROOT=$2; shift 2 ;;
      --arch) need_arg "$@"; ARCH=$2; shift 2 ;;
      --port) need_arg "$@"; PORT=$2; shift 2 ;;
      --domain) need_arg "$@"; TLS_DOMAIN=$2; shift 2 ;;
      --email) need_arg "$@"; TLS_EMAIL=$2; shift 2 ;;
      --health-timeout) need_arg "$@"; HEALTH_TIMEOUT=$2; shift 2 ;;
      --no-start) NO_START=1; shift ;;
      --no-systemd) NO_SYSTEMD=1; shift ;;
      --uninstall) UNINSTALL=1; shift ;;
      --purge) PURGE=1; shift ;;
      --yes|-y) YES=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option \"$1\"; allowed: --binary, --sha256sums, --base-url, --prefix, --root, --arch, --port, --domain, --email, --no-start, --no-systemd, --health-timeout, --uninstall, --purge, --yes, --help" ;;
    esac
  done
  check_tls_args
  case "$PORT" in "" ) ;; *[!0-9]*) die "--port \"$PORT\" is not valid; allowed: a number from 1 to 65535" ;; *) if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then die "--port $PORT is not valid; allowed: 1 to 65535"; fi ;; esac
  case "$HEALTH_TIMEOUT" in ""|*[!0-9]*|0|00*) die "--health-timeout \"$HEALTH_TIMEOUT\" is not valid; allowed: whole seconds, at least 1" ;; esac
  case "$ARCH" in ""|x64|arm64) ;; *) die "--arch \"$ARCH\" is not valid; allowed: x64, arm64" ;; esac
  [ "$PURGE" -eq 0 ] || [ "$UNINSTALL" -eq 1 ] || die "--purge only goes with --uninstall"
  case "$PREFIX" in ""|/*) ;; *) die "--prefix must be an absolute path, got \"$PREFIX\"" ;; esac
  if [ -n "$ROOT" ]; then
    case "$ROOT" in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
    ROOT=${ROOT%/}
  fi

  # Paths as the installed system sees them, and as this script writes them (under --root).
  DATA_DIR=/var/lib/switchyard
  UNIT_PATH=/etc/systemd/system/$SERVICE.service
  # Root's own copy of DuckDB's library, for the binaries this script runs (never the service's).
  NATIVE_DIR=/var/cache/switchyard
  R_DATA="$ROOT$DATA_DIR" R_UNIT="$ROOT$UNIT_PATH" R_NATIVE="$ROOT$NATIVE_DIR"
  # The binary: --prefix, else where the installed unit runs it from, else /usr/local/bin.
  if [ -n "$PREFIX" ]; then
    BIN_PATH="$PREFIX/bin/switchyard"
  else
    BIN_PATH=$(unit_bin)
    [ -n "$BIN_PATH" ] || BIN_PATH=/usr/local/bin/switchyard
  fi
  R_BIN="$ROOT$BIN_PATH"
  SYSTEMCTL_CMD=${SYSTEMCTL:-systemctl}
}

unit_bin() { # the binary the installed unit runs, if any
  if [ -f "$R_UNIT" ]; then sed -n 's/^ExecStart=\(\/[^ ]*\) serve.*$/\1/p' "$R_UNIT" | head -n 1; fi
}

# How the service is set up: live (this system's running systemd, or the SYSTEMCTL
# given for --root), image (--root: unit written and enabled for that system's
# boot; the host's systemd is never touched), or none.
service_mode() {
  if [ "$NO_SYSTEMD" -eq 1 ]; then echo none
  elif [ -n "$ROOT" ]; then if [ -n "${SYSTEMCTL:-}" ]; then echo live; else echo image; fi
  elif command -v "$SYSTEMCTL_CMD" >/dev/null 2>&1 && [ -d /run/systemd/system ]; then echo live
  else echo none
  fi
}
sysctl() { "$SYSTEMCTL_CMD" "$@"; }

enable_in_image() { # what `systemctl --root enable` does: the WantedBy link
  wants="$ROOT/etc/systemd/system/multi-user.target.wants"
  mkdir -p "$wants"
  ln -sf "$UNIT_PATH" "$wants/$SERVICE.service"
}

detect_arch() {
  if [ -n "$ARCH" ]; then return 0; fi
  m=$(uname -m)
  case "$m" in
    x86_64|amd64) ARCH=x64 ;;
    aarch64|arm64) ARCH=arm64 ;;
    armv6*|armv7*|armv8l|armhf|arm)
      die "this is a 32-bit ARM system ($m). Switchyard is built on Bun, which runs on 64-bit ARM (aarch64) only. Install a 64-bit OS (on a Raspberry Pi 3, 4, 5 or Zero 2: Raspberry Pi OS (64-bit)) and run this again." ;;
    *) die "unsupported machine \"$m\"; Switchyard runs on x86_64 and aarch64 Linux" ;;
  esac
  if [ "$ARCH" = arm64 ] && [ "$(getconf LONG_BIT 2>/dev/null || echo 64)" = 32 ]; then
    die "the kernel is 64-bit ($m) but the system (userland) is 32-bit; Bun needs a 64-bit OS. Install Raspberry Pi OS (64-bit) or another arm64 OS."
  fi
  [ "$(uname -s)" = Linux ] || die "Switchyard's binaries are for Linux; this is $(uname -s)"
}

have() { command -v "$1" >/dev/null 2>&1; }

download() { # URL FILE
  if have curl; then curl -fsSL --retry 3 -o "$2" "$1"
  elif have wget; then wget -q -O "$2" "$1"
  else die "need curl or wget to download $1; install one, or download the binary yourself and pass --binary PATH"
  fi
}

http_ok() { # URL [NAME:PORT:ADDRESS to reach NAME at]
  if have curl; then curl -fsS --noproxy '*' --max-time 3 ${2:+--resolve "$2"} -o /dev/null "$1" 2>/dev/null
  elif have wget; then wget -q --no-proxy -T 3 -O /dev/null "$1" 2>/dev/null
  else return 1
  fi
}

sha256_of() {
  if have sha256sum; then sha256sum "$1" | cut -d' ' -f1
  elif have shasum; then shasum -a 256 "$1" | cut -d' ' -f1
  elif have openssl; then openssl dgst -sha256 "$1" | sed 's/.*= *//'
  else die "need sha256sum, shasum or openssl to check the download"
  fi
}

verify_sum() { # FILE NAME SUMSFILE
  want=$(awk -v n="$2" '$2 == n || $2 == "*" n { print $1; exit }' "$3")
  [ -n "$want" ] || die "$3 has no line for $2"
  got=$(sha256_of "$1")
  [ "$got" = "$want" ] || die "$2 does not match its SHA256SUMS entry (got $got, expected $want): the download is damaged or not the released file"
  say "checked $2 against SHA256SUMS"
}

free_kb() { # DIR (its nearest existing parent)
  d=$1
  while [ ! -d "$d" ]; do d=$(dirname "$d"); done
  df -Pk "$d" | awk 'NR == 2 { print $4 }'
}

need_space() { # DIR KB WHAT
  have df || return 0
  f=$(free_kb "$1")
  [ -z "$f" ] || [ "$f" -ge "$2" ] || die "not enough space for $3 in $1: $((f / 1024)) MiB free, $(($2 / 1024)) MiB needed"
}

user_exists() {
  if [ -n "$ROOT" ]; then grep -q "^$SVC_USER:" "$ROOT/etc/passwd" 2>/dev/null
  else id -u "$SVC_USER" >/dev/null 2>&1
  fi
}

user_ids() { # prints uid:gid
  if [ -n "$ROOT" ]; then awk -F: -v u="$SVC_USER" '$1 == u { print $3 ":" $4 }' "$ROOT/etc/passwd"
  else printf '%s:%s\n' "$(id -u "$SVC_USER")" "$(id -g "$SVC_USER")"
  fi
}

create_user() {
  user_exists && return 0
  have useradd || die "need useradd to create the $SVC_USER system user"
  if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT/etc"
    for f in passwd group shadow gshadow; do [ -e "$ROOT/etc/$f" ] || : >"$ROOT/etc/$f"; done
    # (In an image without /usr/sbin/nologin yet, useradd warns about the shell: only a failure is shown.)
    out=$(useradd --root "$ROOT" --system --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin --user-group "$SVC_USER" 2>&1) \
      || die "could not create the system user $SVC_USER in $ROOT: $out"
  else
    useradd --system --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin --user-group "$SVC_USER" \
      || die "could not create the system user $SVC_USER (useradd failed; see above)"
  fi
  say "created system user $SVC_USER"
}

host_ip() {
  ip=$( (hostname -I 2>/dev/null || true) | awk '{ print $1 }')
  [ -n "$ip" ] || ip=$( (ip route get 1.1.1.1 2>/dev/null || true) | awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }')
  printf '%s\n' "${ip:-localhost}"
}

write_unit() { # PORT
  mkdir -p "$(dirname "$R_UNIT")"
  tmp="$R_UNIT.tmp.$$"
  cat >"$tmp" <<EOF
# Written by Switchyard's install.sh; run it again to upgrade. Local changes
# belong in a drop-in (systemctl edit $SERVICE), which upgrades keep.
[Unit]
Description=Switchyard stream hub
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$SVC_USER
Group=$SVC_USER
ExecStart=$BIN_PATH serve
WorkingDirectory=$DATA_DIR
Environment=SWITCHYARD_DATA_DIR=$DATA_DIR
Environment=SWITCHYARD_PORT=$1
Environment=XDG_CACHE_HOME=$DATA_DIR/cache
Restart=on-failure
RestartSec=2
TimeoutStopSec=20
LimitNOFILE=65536
# Lets the query process come back from SCHED_IDLE (a long query runs there, so the
# hub's fan-out keeps its rate) to nice 10, where the hub starts it; never below 10.
LimitNICE=10
# 512 MB machine: the hub idles near 50 MB; queries (a warm DuckDB) and compaction
# run in child processes. Out of memory, the kernel kills a child first (they run
# with oom_score_adj 500) and the service goes on (OOMPolicy=continue): the hub
# fails that query or compaction run with a clear error and starts a new child.
MemoryHigh=320M
MemoryMax=384M
OOMPolicy=continue
# The sandbox (systemd-analyze security rates it 1.2; test/install-unit.test.ts).
# No MemoryDenyWriteExecute: Bun's JIT writes the code it runs.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
PrivateUsers=yes
ProtectSystem=strict
ReadWritePaths=$DATA_DIR
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
PrivateMounts=yes
PrivateIPC=yes
RemoveIPC=yes
ProtectProc=invisible
ProcSubset=pid
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
# UDP, TCP, and local sockets (the resolver may ask nscd or systemd-resolved); no netlink.
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
# ...but for lowering a child's priority (nice 10, SCHED_IDLE during a long query):
# without CAP_SYS_NICE and past LimitNICE these only ever lower it.
SystemCallFilter=setpriority sched_setscheduler
# A call outside the list fails with EPERM rather than killing the service.
SystemCallErrorNumber=EPERM
UMask=0027

[Install]
WantedBy=multi-user.target
EOF
  mv "$tmp" "$R_UNIT"
}

# HTTPS by ACME (--domain, --email): the settings go to a drop-in of their own, so
# the unit above stays as it is, and an upgrade without --domain keeps them.
tls_dropin() { printf '%s\n' "$(dirname "$R_UNIT")/$SERVICE.service.d/10-tls.conf"; }

check_tls_args() {
  if [ -n "$TLS_EMAIL" ] && [ -z "$TLS_DOMAIN" ]; then die "--email goes with --domain (the names to get a certificate for)"; fi
  [ -n "$TLS_DOMAIN" ] || return 0
  for name in $(printf '%s' "$TLS_DOMAIN" | tr ',' ' '); do
    case "$name" in
      *[!A-Za-z0-9.-]*|.*|*.|*..*) die "--domain \"$name\" is not a domain name; allowed: DNS names like relay.example.org, comma-separated (no wildcards)" ;;
      *.*) ;;
      *) die "--domain \"$name\" is not a public domain name; allowed: a name with a dot, like relay.example.org" ;;
    esac
  done
  case "$TLS_EMAIL" in *" "*|*,*) die "--email \"$TLS_EMAIL\" is not one email address; allowed: one address like ops@example.org" ;; ""|*@*.*) ;; *) die "--email \"$TLS_EMAIL\" is not an email address; allowed: one address like ops@example.org" ;; esac
  [ -n "$PORT" ] || PORT=443
}

write_tls_dropin() { # written only with --domain
  [ -n "$TLS_DOMAIN" ] || return 0
  mkdir -p "$(dirname "$(tls_dropin)")"
  cat >"$(tls_dropin)" <<EOF
# Written by Switchyard's install.sh --domain: HTTPS on SWITCHYARD_PORT with a certificate
# from Let's Encrypt, kept in $DATA_DIR/tls. Port 80 answers the ACME challenge and
# redirects to HTTPS. Remove this file (and daemon-reload) to go back to plain HTTP.
[Service]
Environment=SWITCHYARD_ACME_DOMAIN=$TLS_DOMAIN
Environment=SWITCHYARD_ACME_EMAIL=$TLS_EMAIL
Environment=SWITCHYARD_REDIRECT_PORT=80
# Ports below 1024 without root: this one capability, nothing more.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
EOF
  say "HTTPS for $TLS_DOMAIN by Let's Encrypt: $(tls_dropin) (open ports 80 and 443 in the firewall)"
}

tls_name() { # the first --domain name the service runs with, if any
  d=$(service_env SWITCHYARD_ACME_DOMAIN)
  if [ -z "$d" ] && [ -f "$(tls_dropin)" ]; then d=$(sed -n 's/^Environment=SWITCHYARD_ACME_DOMAIN=//p' "$(tls_dropin)" | tail -n 1); fi
  printf '%s\n' "${d%%,*}"
}

service_env() { # VAR: its value in the service's environment (drop-ins included when systemd can say), else from the unit file
  v=""
  if [ "$MODE" = live ]; then
    v=$(sysctl show -p Environment --value "$SERVICE" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | tail -n 1) || v=""
  fi
  if [ -z "$v" ] && [ -f "$R_UNIT" ]; then v=$(sed -n "s/^Environment=$1=//p" "$R_UNIT" | tail -n 1); fi
  printf '%s\n' "$v"
}

wait_healthy() { # waits for /healthz on the port and address the service listens on
  port=$(service_env SWITCHYARD_PORT)
  host=$(service_env SWITCHYARD_HOST)
  case "$host" in ""|0.0.0.0|::|"[::]") host=127.0.0.1 ;; *:*) host="[$host]" ;; esac
  url="http://$host:${port:-8888}/healthz"
  # With --domain, healthy means HTTPS with a certificate this machine trusts for the name, reached on this box.
  name=$(tls_name) resolve=""
  if [ -n "$name" ]; then url="https://$name:${port:-443}/healthz" resolve="$name:${port:-443}:$host"; fi
  i=0
  while [ "$i" -lt $((HEALTH_TIMEOUT * 2)) ]; do
    if http_ok "$url" "$resolve"; then return 0; fi
    sleep 0.5
    i=$((i + 1))
  done
  return 1
}

# Root runs the binaries (`version`, which loads DuckDB's library) with the library in
# root's own folder, never in the data folder's cache: the service user can write
# there, and root must not run code another user could have put in place. This also
# holds for an installed binary older than this script, which does not check by itself.
why_not_root_only() { # DIR: prints why a user other than root could change DIR or a folder above it; nothing if none can
  d=$(realpath "$1" 2>/dev/null) || { printf '%s cannot be resolved\n' "$1"; return 0; }
  last=1
  while :; do
    # shellcheck disable=SC2046 # three numbers: uid, gid, octal mode
    set -- $(stat -c '%u %g %a' "$d")
    m=$((0$3))
    if [ "$1" -ne 0 ]; then printf '%s is owned by uid %s, not root\n' "$d" "$1"; return 0; fi
    # A sticky folder (/tmp) above is fine: only root may replace what root put in it.
    if [ "$last" -eq 1 ] || [ $((m & 01000)) -eq 0 ]; then
      if [ $((m & 02)) -ne 0 ]; then printf '%s is writable by every user\n' "$d"; return 0; fi
      if [ $((m & 020)) -ne 0 ] && [ "$2" -ne 0 ]; then printf '%s is writable by group %s\n' "$d" "$2"; return 0; fi
    fi
    [ "$d" != / ] || return 0
    d=$(dirname "$d") last=0
  done
}

prepare_native_cache() { # root's own folder for DuckDB's library
  mkdir -p "$R_NATIVE"
  chmod 0755 "$R_NATIVE"
  why=$(why_not_root_only "$R_NATIVE")
  [ -z "$why" ] || die "$NATIVE_DIR must be root's alone to hold the DuckDB library root loads here, but $why. Make it (and every folder above it) owned by root and writable by root only, then run this again"
}

binary_version() { # FILE: the output of FILE version, with DuckDB's library unpacked in root's own folder (prepare_native_cache first)
  SWITCHYARD_NATIVE_DIR="$R_NATIVE" "$1" version 2>/dev/null
}

warn_noexec_data() { # the service unpacks and loads DuckDB's library under the data folder
  have findmnt || return 0
  opts=$(findmnt -n -o OPTIONS -T "$R_DATA" 2>/dev/null) || return 0
  case ",$opts," in
    *,noexec,*) warn "$DATA_DIR is on a noexec mount: the service cannot load DuckDB's library from its cache there, so queries and compaction will not work (see \"DuckDB's native library\" in docs/INSTALL.md)" ;;
  esac
}

prune_native_cache() { # removes DuckDB libraries of earlier versions (root's and the service's); keeps the installed one's
  [ -n "$NATIVE_KEEP" ] || return 0
  for d in "$R_NATIVE"/duckdb-* "$R_DATA/cache/switchyard"/duckdb-*; do
    # rm -rf removes a symbolic link the service may have put there, never what it points to.
    if [ -e "$d" ] && [ "${d##*/}" != "$NATIVE_KEEP" ]; then rm -rf "$d"; say "removed an older DuckDB library, $d"; fi
  done
}

no_links() { # PATH...: refuses symlinks where root is about to copy (the data folder is the service's to write)
  for p in "$@"; do
    if [ -L "$p" ]; then die "$p is a symbolic link; the data folder should hold none there. Remove it (after checking what made it) and run this again"; fi
  done
}

# ---- uninstall
uninstall() {
  MODE=$(service_mode)
  if [ "$MODE" = live ] && [ -f "$R_UNIT" ]; then
    sysctl disable --now "$SERVICE" || warn "could not stop the service"
  fi
  rm -f "$R_UNIT" "$R_UNIT.previous" "$R_BIN" "$R_BIN.previous" "$ROOT/etc/systemd/system/multi-user.target.wants/$SERVICE.service"
  rm -rf "$R_NATIVE"
  rm -f "$(tls_dropin)"
  if [ "$MODE" = live ]; then sysctl daemon-reload || true; fi
  say "removed the $SERVICE service and $BIN_PATH"
  if [ "$PURGE" -eq 1 ]; then
    if [ -t 0 ] && [ "$YES" -eq 0 ]; then
      printf 'Delete %s (the log, settings and tokens) for good? [y/N] ' "$DATA_DIR"
      read -r answer || answer=""
      case "$answer" in y|Y|yes|YES) ;; *) say "kept $DATA_DIR"; exit 0 ;; esac
    fi
    rm -rf "$R_DATA"
    if user_exists; then
      if [ -n "$ROOT" ]; then userdel --root "$ROOT" "$SVC_USER" 2>/dev/null || warn "could not remove user $SVC_USER"
      else userdel "$SVC_USER" || warn "could not remove user $SVC_USER"
      fi
    fi
    say "removed $DATA_DIR and the $SVC_USER user"
  else
    say "kept the data in $DATA_DIR (remove it with --uninstall --purge)"
  fi
  exit 0
}

# ---- install or upgrade

# Puts the previous binary, unit and settings store back and starts it (after a failed
# health check, or when the upgrade is interrupted). Returns how the old one fared.
roll_back() {
  [ "$SWAPPED" -eq 1 ] || return 0
  sysctl stop "$SERVICE" || true
  if [ -f "$R_BIN.previous" ]; then mv -f "$R_BIN.previous" "$R_BIN"; fi
  if [ -f "$R_UNIT.previous" ]; then mv -f "$R_UNIT.previous" "$R_UNIT"; sysctl daemon-reload || true; fi
  if [ -n "$BACKUP" ]; then
    no_links "$BACKUP" "$BACKUP-wal" "$BACKUP-shm"
    for ext in "" -wal -shm; do
      rm -f "$R_DATA/switchyard.db$ext"
      if [ -f "$BACKUP$ext" ]; then cp -p "$BACKUP$ext" "$R_DATA/switchyard.db$ext"; fi
    done
  fi
  SWAPPED=0
  sysctl reset-failed "$SERVICE" 2>/dev/null || true
  sysctl restart "$SERVICE" && wait_healthy
}

on_interrupt() {
  trap - INT TERM
  rm -f "$STAGED"
  if [ "${SWAPPED:-0}" -eq 1 ]; then
    warn "interrupted during the upgrade: putting the previous version back"
    roll_back || warn "the previous version does not answer /healthz either; see journalctl -u $SERVICE"
  fi
  exit 130
}

install_or_upgrade() {
  detect_arch
  NAME="switchyard-linux-$ARCH"
  MODE=$(service_mode)
  SWAPPED=0 BACKUP="" NATIVE_KEEP=""
  mkdir -p "$(dirname "$R_BIN")"
  rm -f "$R_BIN.previous"
  need_space "$(dirname "$R_BIN")" 200000 "the binary"
  need_space "$R_DATA" 100000 "the data folder (DuckDB's library is unpacked there)"
  create_user
  no_links "$R_DATA"
  mkdir -p "$R_DATA"
  chown "$(user_ids)" "$R_DATA"
  chmod 0750 "$R_DATA"
  STAGED="$R_BIN.new.$$"
  trap 'rm -f "$STAGED"' EXIT
  trap on_interrupt INT TERM

  if [ -n "$BINARY" ]; then
    [ -f "$BINARY" ] || die "--binary $BINARY: no such file"
    [ -n "$SUMS" ] || SUMS="$(dirname "$BINARY")/SHA256SUMS"
    [ -f "$SUMS" ] || die "no SHA256SUMS beside $BINARY; pass --sha256sums FILE"
    cp "$BINARY" "$STAGED"
    verify_sum "$STAGED" "$(basename "$BINARY")" "$SUMS"
  else
    BASE_URL=${BASE_URL%/}
    say "downloading $BASE_URL/$NAME"
    download "$BASE_URL/$NAME" "$STAGED" || die "could not download $BASE_URL/$NAME"
    sums_tmp="$STAGED.sums"
    download "$BASE_URL/SHA256SUMS" "$sums_tmp" || { rm -f "$sums_tmp"; die "could not download $BASE_URL/SHA256SUMS"; }
    verify_sum "$STAGED" "$NAME" "$sums_tmp"
    rm -f "$sums_tmp"
  fi
  chmod 0755 "$STAGED"
  if [ -n "$ROOT" ] && [ -n "$ARCH" ] && [ "$MODE" = image ]; then
    # An image for another machine: the binary may not run here, so it is not tried.
    NEW_VERSION="switchyard ($NAME)"
  else
    prepare_native_cache
    out=$(binary_version "$STAGED") || true
    NEW_VERSION=$(printf '%s\n' "$out" | head -n 1)
    [ -n "$NEW_VERSION" ] || die "the new binary does not run on this machine ($(uname -m)): \"switchyard version\" failed; the installed one was not changed"
    case "$out" in
      *"duckdb not available"*) warn "the new binary cannot load its DuckDB library here ($(printf '%s\n' "$out" | sed -n 's/^duckdb: //p' | head -n 1)); the hub will run, but queries and compaction will not" ;;
    esac
    NATIVE_KEEP=$(printf '%s\n' "$out" | sed -n 's/^duckdb library: embedded, unpacked in //p' | head -n 1)
    NATIVE_KEEP=${NATIVE_KEEP##*/}
  fi
  warn_noexec_data

  UPGRADE=0
  [ -f "$R_BIN" ] && UPGRADE=1
  [ -n "$PORT" ] || PORT=$(sed -n 's/^Environment=SWITCHYARD_PORT=\([0-9]*\)$/\1/p' "$R_UNIT" 2>/dev/null | head -n 1)
  [ -n "$PORT" ] || PORT=8888

  if [ "$UPGRADE" -eq 1 ]; then
    prepare_native_cache
    OLD_VERSION=$(binary_version "$R_BIN" | head -n 1) || true
    say "upgrading ${OLD_VERSION:-the installed switchyard} to $NEW_VERSION"
    if [ "$MODE" = live ]; then sysctl stop "$SERVICE" || true; fi
    no_links "$R_DATA/switchyard.db" "$R_DATA/switchyard.db-wal" "$R_DATA/switchyard.db-shm" "$R_DATA/backups"
    if [ -f "$R_DATA/switchyard.db" ]; then
      BACKUP="$R_DATA/backups/switchyard.db.$(date -u +%Y%m%dT%H%M%SZ)"
      mkdir -p "$R_DATA/backups"
      chmod 0700 "$R_DATA/backups"
      for ext in "" -wal -shm; do
        if [ -f "$R_DATA/switchyard.db$ext" ]; then cp -p "$R_DATA/switchyard.db$ext" "$BACKUP$ext"; fi
      done
      chown -R "$(user_ids)" "$R_DATA/backups"
      say "backed up the settings store to $DATA_DIR/backups/$(basename "$BACKUP")"
    fi
    # A hard link keeps the old binary as .previous without a second copy on disk.
    ln -f "$R_BIN" "$R_BIN.previous" 2>/dev/null || cp -p "$R_BIN" "$R_BIN.previous"
    if [ -f "$R_UNIT" ]; then cp -p "$R_UNIT" "$R_UNIT.previous"; fi
  else
    say "installing $NEW_VERSION"
  fi
  mv "$STAGED" "$R_BIN"
  SWAPPED=$UPGRADE
  say "installed $BIN_PATH"

  if [ "$MODE" = none ]; then
    rm -f "$R_BIN.previous" "$R_UNIT.previous"
    say ""
    say "No systemd here (or --no-systemd): no service was set up. Run it by hand:"
    say "  sudo -u $SVC_USER $BIN_PATH serve --data-dir $DATA_DIR --port $PORT"
    say "The admin page will be at http://$(host_ip):$PORT/admin; the first admin password is written to $DATA_DIR/initial-admin-password."
    exit 0
  fi

  write_unit "$PORT"
  write_tls_dropin
  if [ "$MODE" = image ]; then
    enable_in_image
    rm -f "$R_UNIT.previous"
    say "installed into $ROOT and enabled: the service starts when that system boots (port $PORT)"
    say "  first admin password: in $DATA_DIR/initial-admin-password there, after its first start"
    exit 0
  fi
  sysctl daemon-reload
  sysctl enable "$SERVICE"
  if [ "$NO_START" -eq 1 ]; then
    rm -f "$R_UNIT.previous"
    say "enabled the $SERVICE service (not started: --no-start); start it with: systemctl start $SERVICE"
    exit 0
  fi
  sysctl restart "$SERVICE"
  say "started the $SERVICE service; waiting for it to answer /healthz"

  if ! wait_healthy; then
    if [ "$UPGRADE" -eq 1 ]; then
      warn "the new binary did not answer /healthz within $HEALTH_TIMEOUT s; rolling back to ${OLD_VERSION:-the previous binary}"
      if roll_back; then
        die "upgrade to $NEW_VERSION failed its health check; rolled back to ${OLD_VERSION:-the previous binary}, which is running (see journalctl -u $SERVICE)"
      fi
      die "upgrade to $NEW_VERSION failed and the previous binary does not answer /healthz either; see journalctl -u $SERVICE"
    fi
    die "the service did not answer /healthz within $HEALTH_TIMEOUT s; see journalctl -u $SERVICE"
  fi
  SWAPPED=0
  rm -f "$R_UNIT.previous"

  if [ "$UPGRADE" -eq 1 ]; then prune_native_cache; fi
  say ""
  say "Switchyard is running: $NEW_VERSION"
  if [ -n "$(tls_name)" ]; then say "  admin:  https://$(tls_name)$([ "$PORT" = 443 ] || printf ':%s' "$PORT")/admin"; else say "  admin:  http://$(host_ip):$PORT/admin"; fi
  if [ -f "$R_DATA/initial-admin-password" ]; then
    say "  first admin password: sudo cat $DATA_DIR/initial-admin-password (or journalctl -u $SERVICE -g 'admin password')"
  else
    say "  admin password: as set (a new one: sudo -u $SVC_USER $BIN_PATH admin password --data-dir $DATA_DIR)"
  fi
  say "  logs:   journalctl -u $SERVICE -f"
}

main() {
  parse_args "$@"
  if [ "$(id -u)" -ne 0 ]; then
    die "must run as root: it creates a system user and a service (try: curl -fsSL <url>/install.sh | sudo sh, or sudo sh install.sh)"
  fi
  if [ "$UNINSTALL" -eq 1 ]; then uninstall; else install_or_upgrade; fi
}

# Everything above only defines functions: a download cut short runs nothing.
main "$@"
