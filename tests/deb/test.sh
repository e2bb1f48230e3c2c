#!/usr/bin/env bash
# make test-deb: the Debian package as an operator meets it, on this machine (root).
#
#   tests/deb/test.sh target/debian/webdis-rs_VERSION-1_ARCH.deb
#
# Installs the package with dpkg -i and checks what it put where (binary, conffile and
# its mode, systemd unit, system user, man page, docs); runs the installed binary with
# the installed /etc/webdis-rs/webdis.json, as the webdis-rs user, against a private
# redis-server, both inside a network namespace of their own (unshare --net), where the
# config's ports (Redis 6379, HTTP 7379) are free whatever runs on this machine; curls
# it; stops it with SIGTERM. Then dpkg -r (the conffile stays) and dpkg -P (it goes; the
# system user stays, as Debian packages leave theirs). The package is never left
# installed: the exit trap purges it whatever happened, and removes the webdis-rs user
# if this run created it. Ends with "N passed, M failed"; exit status 1 on any failure.
# It refuses to run (exit 2) where webdis-rs is already installed, rather than touch an
# operator's install.

set -uo pipefail

PKG=webdis-rs
USER_NAME=webdis-rs
CONF=/etc/webdis-rs/webdis.json

if [ "${1:-}" = "--in-netns" ]; then
	IN_NETNS=1
else
	IN_NETNS=0
	DEB=${1:?usage: tests/deb/test.sh PACKAGE.deb}
fi

passed=0
failed=0
ok() { echo "ok   - $*"; passed=$((passed + 1)); }
bad() { echo "FAIL - $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}
# same DESCRIPTION WANT GOT: exact comparison, both shown on failure.
same() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		bad "$1: want $(printf %q "$2"), got $(printf %q "$3")"
	fi
}
die() {
	echo "test-deb: $*" >&2
	exit 2
}

# ---- inside the network namespace: the installed binary and config, for real --------
if [ "$IN_NETNS" = 1 ]; then
	T=$(mktemp -d /tmp/webdis-rs-test-deb.XXXXXX)
	chmod 755 "$T"
	rpid=
	gpid=
	trap '[ -n "$gpid" ] && kill -9 "$gpid" 2>/dev/null; [ -n "$rpid" ] && kill -9 "$rpid" 2>/dev/null; rm -rf "$T"' EXIT
	ip link set lo up || die "cannot bring lo up in the network namespace"
	redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --dir "$T" \
		--logfile "$T/redis.log" &
	rpid=$!
	for _ in $(seq 50); do
		redis-cli -p 6379 ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	same "private redis-server on 127.0.0.1:6379" PONG "$(redis-cli -p 6379 ping 2>&1)"
	# As the service runs it (User=webdis-rs in the unit): setpriv execs, so $! is the
	# gateway's pid.
	setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
		/usr/bin/webdis-rs "$CONF" 2>"$T/gw.log" &
	gpid=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null http://127.0.0.1:7379/PING && break
		sleep 0.05
	done
	same "GET /PING" '{"PING":[true,"PONG"]}' "$(curl -s http://127.0.0.1:7379/PING)"
	same "GET /SET/hello/world" '{"SET":[true,"OK"]}' "$(curl -s http://127.0.0.1:7379/SET/hello/world)"
	same "GET /GET/hello" '{"GET":"world"}' "$(curl -s http://127.0.0.1:7379/GET/hello)"
	same "GET /FLUSHALL is denied by the packaged ACL" '403 {"error":"Forbidden"}' \
		"$(curl -s -w '%{http_code} ' -o "$T/body" http://127.0.0.1:7379/FLUSHALL)$(cat "$T/body")"
	same "the gateway runs as $USER_NAME" "$USER_NAME" "$(ps -o user= -p "$gpid" | tr -d ' ')"
	same "it listens on 127.0.0.1 only" "127.0.0.1:7379" \
		"$(ss -Hltn 'sport = :7379' | awk '{print $4}' | sort -u)"
	kill -TERM "$gpid"
	code=timeout
	for _ in $(seq 150); do
		if ! kill -0 "$gpid" 2>/dev/null; then
			wait "$gpid"
			code=$?
			break
		fi
		sleep 0.1
	done
	gpid=
	same "SIGTERM: exit status 0" 0 "$code"
	redis-cli -p 6379 shutdown nosave >/dev/null 2>&1
	wait "$rpid" 2>/dev/null
	rpid=
	# The packaged config loads without a warning (journal lines: "[pid] date W ...").
	same "no warning or error in its log" "" "$(grep -E '^\[[0-9]+\] .* [WE] ' "$T/gw.log")"
	echo "counts $passed $failed"
	exit 0
fi

# ---- outside: install, inspect, run, remove, purge ------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (it installs a package with dpkg)"
[ -f "$DEB" ] || die "no package $DEB: run make deb"
for tool in dpkg dpkg-query unshare setpriv ip ss curl redis-server redis-cli gzip \
	systemd-analyze deluser; do
	command -v "$tool" >/dev/null || die "$tool is missing"
done
status() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null; }
# dpkg has no trace of the package (never installed, or purged).
not_known() {
	case "$(status)" in
	"" | *" not-installed") return 0 ;;
	*) return 1 ;;
	esac
}
not_known || die "$PKG is already known to dpkg here ($(status)): not touching it"
user_exists() { getent passwd "$USER_NAME" >/dev/null; }
user_existed=0
user_exists && user_existed=1

cleanup() {
	if ! not_known; then
		echo "cleanup: purging $PKG"
		dpkg_run -P "$PKG" >/dev/null 2>&1
	fi
	if [ "$user_existed" = 0 ] && user_exists; then
		deluser --system --quiet "$USER_NAME" >/dev/null 2>&1
	fi
	if [ "$user_existed" = 0 ] && getent group "$USER_NAME" >/dev/null; then
		delgroup --system --quiet "$USER_NAME" >/dev/null 2>&1
	fi
}
trap cleanup EXIT
# A signal ends the run through the EXIT trap too (bash skips it when killed).
trap 'exit 130' INT TERM HUP

# dpkg, waiting (up to 2 min) while another dpkg or apt holds the lock.
dpkg_run() {
	local out rc
	for _ in $(seq 60); do
		out=$(DEBIAN_FRONTEND=noninteractive dpkg "$@" 2>&1)
		rc=$?
		if [ $rc -ne 0 ] && grep -q "lock" <<<"$out"; then
			sleep 2
			continue
		fi
		printf '%s\n' "$out"
		return $rc
	done
	printf '%s\n' "$out"
	return 1
}

echo "# dpkg -i $DEB"
check "dpkg -i" dpkg_run -i "$DEB"
same "installed" "install ok installed" "$(status)"
version=$(dpkg-query -W -f='${Version}' "$PKG")
same "webdis-rs --version" "webdis-rs ${version%-*}" "$(/usr/bin/webdis-rs --version)"
same "webdis-rs --help, first line" "Usage: webdis-rs [CONFIG]" "$(/usr/bin/webdis-rs --help | head -1)"
same "$CONF is a conffile" 1 "$(dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -c "^ $CONF ")"
same "$CONF is root:$USER_NAME 640" "root:$USER_NAME 640" "$(stat -c '%U:%G %a' "$CONF")"
IFS=: read -r _ _ uid gid _ home shell <<<"$(getent passwd "$USER_NAME")"
check "$USER_NAME is a system user (uid $uid)" test "${uid:-1000}" -lt 1000
same "its group" "$USER_NAME" "$(getent group "$gid" | cut -d: -f1)"
same "its home and shell" "/nonexistent /usr/sbin/nologin" "$home $shell"
unit=$(dpkg -L "$PKG" | grep '/systemd/system/webdis-rs\.service$')
check "systemd unit installed ($unit)" test -f "$unit"
check "unit: Type=notify" grep -qx 'Type=notify' "$unit"
check "unit: ExecReload sends SIGHUP" grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit"
check "unit: runs as $USER_NAME" grep -qx "User=$USER_NAME" "$unit"
check "unit: systemd-analyze verify" systemd-analyze verify "$unit"
check "unit enabled (multi-user.target.wants)" \
	test -L /etc/systemd/system/multi-user.target.wants/webdis-rs.service
check "man page" sh -c 'gzip -dc /usr/share/man/man1/webdis-rs.1.gz | grep -q "^\.TH WEBDIS-RS 1"'
check "README in /usr/share/doc/webdis-rs" test -s /usr/share/doc/webdis-rs/README.md
check "copyright in /usr/share/doc/webdis-rs" test -s /usr/share/doc/webdis-rs/copyright

echo "# the installed binary with the installed config (private network namespace)"
out=$(unshare --net "$0" --in-netns)
echo "$out" | grep -v '^counts '
read -r _ p f <<<"$(echo "$out" | grep '^counts ')"
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-1}))

echo "# dpkg -r"
check "dpkg -r" dpkg_run -r "$PKG"
same "removed, config files left" "deinstall ok config-files" "$(status)"
check "binary gone" test ! -e /usr/bin/webdis-rs
check "unit gone" test ! -e "$unit"
check "man page gone" test ! -e /usr/share/man/man1/webdis-rs.1.gz
check "$CONF kept" test -f "$CONF"
check "$USER_NAME kept" user_exists

echo "# dpkg -P"
check "dpkg -P" dpkg_run -P "$PKG"
check "purged" not_known
check "$CONF gone" test ! -e "$CONF"
check "/etc/webdis-rs gone" test ! -e /etc/webdis-rs
check "unit no longer enabled" test ! -e /etc/systemd/system/multi-user.target.wants/webdis-rs.service
# Debian packages leave the system users they created (postrm says why); the trap
# removes it when this run created it.
check "$USER_NAME kept after purge" user_exists

echo "test-deb: $passed passed, $failed failed"
[ "$failed" = 0 ]
