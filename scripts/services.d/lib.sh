# What every server's file uses: logging, waiting for a port, installing Debian packages.

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }  # port_open PORT [HOST]

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not answer within ${seconds}s (logs: $STATE)"
    sleep 0.3
  done
}

apt_install() {  # apt_install PACKAGE... (only those missing)
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  [[ $EUID -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
  log "installing ${missing[*]}"
  if [[ ! -f "$STATE/.apt-updated" ]] || [[ -n "$(find "$STATE/.apt-updated" -mmin +1440)" ]]; then
    apt-get update -qq >/dev/null
    touch "$STATE/.apt-updated"
  fi
  # policy-rc.d keeps Debian from starting the servers on install, bound to its defaults.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

