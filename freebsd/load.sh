#!/bin/sh
# load.sh: run builder jobs in throwaway FreeBSD jails, one jail per job.
#
# Run as root, by hand or by rc.d/workerd (workerd_jails="w1 w2"). It drives
# jail(8) with jail.conf (format: jail.conf(5)), zfs(8), mount(8), umount(8)
# and ifconfig(8); docs/freebsd.md says how to set up what it expects.
#
#   load.sh build NAME     clone $SNAPSHOT to $CLONEFS/NAME (mounted on
#                          $JAILDIR/NAME), start jail NAME from $JAILCONF, whose
#                          exec.start runs `workerd --once`; when workerd has
#                          exited, remove the jail and destroy the clone. Exits
#                          with workerd's status.
#   load.sh loop NAME      build NAME again and again, deciding by the status:
#                          0 next jail, 75 back off and retry, 78 stop.
#   load.sh network_start  create $NETIF with $NETADDR, the jails' network
#   load.sh network_stop   destroy it (rc.conf can do both instead)
#
# Every step is safe to repeat after a crash: build first removes whatever an
# earlier run of NAME left behind (a jail, mounts under its path, the clone),
# and network_start/stop check before they act. One loop per NAME at a time:
# two runs of the same NAME would destroy each other's clone.
#
# Exit status of build and loop: workerd's --once status (0 a job ran and its
# result was delivered, 75 spoold unreachable before a job was taken, or the
# job taken back, 78 bad configuration, 2 bad usage), or load.sh's own: 78 for
# a configuration error it can see (no snapshot, no jail.conf, no workerd in
# the snapshot), 2 for bad usage, 1 when the jail could not be run at all
# (retried by loop).
#
# BUGS: workerd's status travels through a file in the jail (see STATUS below),
# which the job could overwrite. A job that can do that can also lie to spoold
# through workerd, so this trusts the jail no less than spoold already does.

set -eu

# Settings; each may be given in the environment instead.
: "${ZROOT:=zroot}"                                  # the ZFS pool or parent dataset
: "${SNAPSHOT:=${ZROOT}/builder/14-2-REL@builder}"   # what every job's jail starts from
: "${CLONEFS:=${ZROOT}/builder/jails}"               # clones are CLONEFS/NAME
: "${JAILDIR:=/usr/local/jails/builder}"             # and mounted on JAILDIR/NAME: jail.conf's path
: "${JAILCONF:=/usr/local/etc/builder/jail.conf}"
: "${TOKEN_FILE:=/usr/local/etc/builder/worker.token}"  # copied into each jail, if it exists
: "${NETIF:=lo1}"
: "${NETADDR:=127.0.2.1/24}"                         # spoold listens here; jails get the rest
: "${BACKOFF_MIN:=5}"                                # seconds; doubled up to BACKOFF_MAX
: "${BACKOFF_MAX:=300}"

# Where jail.conf's exec.start leaves workerd's exit status, relative to the
# jail's root. The two files must agree.
STATUS=var/run/builder-workerd.status
# Where the token lands in the jail; jail.conf's $token names it.
JAIL_TOKEN=usr/local/etc/builder/token

EX_USAGE=2
EX_TEMPFAIL=75
EX_CONFIG=78

log() {
	printf '%s load.sh[%s]: %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$$" "$*" >&2
}

die() {
	_st=$1
	shift
	log "$*"
	exit "$_st"
}

usage() {
	die "$EX_USAGE" "usage: load.sh build NAME | loop NAME | network_start | network_stop"
}

# Jail names become dataset names, paths and rc.conf variable names, and
# jail(8) refuses dots: letters, digits, '_' and '-' only.
check_name() {
	case $1 in
	'' | -* | *[!A-Za-z0-9_-]*)
		die "$EX_USAGE" "bad jail name '$1': use letters, digits, _ and -, not starting with -"
		;;
	esac
}

stop_jail() {
	if jls -j "$name" jid >/dev/null 2>&1; then
		log "removing jail $name"
		# jail.conf's removal steps: SIGTERM to the jailed processes (workerd
		# hands its job back), unmount devfs and any mount lines, drop the IP
		# alias.
		jail -f "$JAILCONF" -r "$name" >/dev/null || log "jail -r $name failed; unmounting by hand"
	fi
}

# The jail, the mounts below its root and the clone, in that order: a mount
# keeps the clone busy and a running jail keeps its mounts. Each part checks
# before it acts, so this runs before every build (a crashed run's leftovers)
# and after it.
cleanup() {
	stop_jail
	# Whatever is still mounted below the root (jail(8) killed half-way, a
	# host crash): deepest first. A mount gone meanwhile is no error.
	mount -p | awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' | sort -r |
		while read -r m; do
			log "unmounting $m"
			umount -f "$m" || log "could not unmount $m (not mounted any more?)"
		done
	if zfs list -H -o name "$fs" >/dev/null 2>&1; then
		log "destroying $fs"
		zfs destroy -f "$fs"
	fi
}

build() {
	name=$1
	check_name "$name"
	fs=$CLONEFS/$name
	dir=$JAILDIR/$name
	[ -r "$JAILCONF" ] ||
		die "$EX_CONFIG" "cannot read $JAILCONF: install freebsd/jail.conf there or set JAILCONF"
	zfs list -H -o name -t snapshot "$SNAPSHOT" >/dev/null 2>&1 ||
		die "$EX_CONFIG" "no ZFS snapshot $SNAPSHOT: make one as docs/freebsd.md says, or set SNAPSHOT"

	jailpid=
	# On a signal (rc.d stop, the loop stopping): take the jail down, which
	# sends workerd SIGTERM so it hands its job back, let jail -c return,
	# then clean up. On any other exit (an error under set -e): clean up.
	trap 'trap - EXIT; stop_jail; [ -z "$jailpid" ] || wait "$jailpid" || :; cleanup; exit 143' HUP INT TERM
	trap 'st=$?; trap - EXIT; cleanup || st=1; exit "$st"' EXIT

	cleanup
	log "cloning $SNAPSHOT to $fs for jail $name"
	zfs clone -p -o mountpoint="$dir" "$SNAPSHOT" "$fs"
	mkdir -p "$dir/var/run/builder" "$dir/$(dirname "$JAIL_TOKEN")"
	rm -f "$dir/$STATUS"
	if [ -r "$TOKEN_FILE" ]; then
		install -m 0400 "$TOKEN_FILE" "$dir/$JAIL_TOKEN"
	else
		log "no $TOKEN_FILE: the jail gets no token (set \$token = \"\"; in jail.conf if spoold wants none)"
	fi
	if [ -r /etc/resolv.conf ]; then
		cp /etc/resolv.conf "$dir/etc/resolv.conf"
	fi

	log "starting jail $name"
	# In the background, so a signal is handled now and not when the job
	# ends: sh runs traps only between foreground commands.
	jail -f "$JAILCONF" -c "$name" &
	jailpid=$!
	jailst=0
	wait "$jailpid" || jailst=$?
	jailpid=

	# The job owned the jail's files: read them only once none of its
	# processes is left, and follow no symlink, which would lead out of the
	# jail into the host's files.
	stop_jail
	st=
	if [ ! -L "$dir/var" ] && [ ! -L "$dir/var/run" ] && [ ! -L "$dir/$STATUS" ] && [ -f "$dir/$STATUS" ]; then
		st=$(head -c 8 "$dir/$STATUS")
	fi
	case $st in
	'')
		log "jail $name left no workerd status (jail -c exited $jailst)"
		st=1
		;;
	*[!0-9]*)
		log "jail $name left a workerd status that is not a number"
		st=1
		;;
	126 | 127)
		log "jail $name could not run workerd (status $st): install node and builder into $SNAPSHOT"
		st=$EX_CONFIG
		;;
	*)
		log "jail $name: workerd exited $st"
		;;
	esac

	trap - EXIT HUP INT TERM
	cleanup
	log "jail $name done"
	exit "$st"
}

# sleep in the background, so that a signal ends the wait at once.
pause() {
	log "next try of $name in ${delay}s"
	sleep "$delay" &
	sleeper=$!
	wait "$sleeper" || :
	sleeper=
	delay=$((delay * 2))
	if [ "$delay" -gt "$BACKOFF_MAX" ]; then
		delay=$BACKOFF_MAX
	fi
}

loop() {
	name=$1
	check_name "$name"
	# Each build is a child process: its own traps and exit status, and
	# set -e stays in force inside it (it would not in a function called
	# from a condition).
	case $0 in
	*/*) self=$0 ;;
	*) self=$(command -v -- "$0") ;;
	esac
	delay=$BACKOFF_MIN
	child=
	sleeper=
	trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || :
	      if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || :; wait "$child" || :; fi
	      log "loop $name stopped by a signal"; exit 143' HUP INT TERM
	while :; do
		sh "$self" build "$name" &
		child=$!
		st=0
		wait "$child" || st=$?
		child=
		case $st in
		0)
			delay=$BACKOFF_MIN
			;;
		"$EX_TEMPFAIL")
			log "spoold unreachable, or the job taken back (75)"
			pause
			;;
		"$EX_CONFIG")
			die "$EX_CONFIG" "stopping loop $name: configuration error (78): a wrong or missing token, a name or platform spoold refuses, no snapshot, or no workerd in it; see the messages above, fix, and start the loop again"
			;;
		"$EX_USAGE")
			die "$EX_USAGE" "stopping loop $name: bad usage (2); check jail.conf's exec.start"
			;;
		*)
			log "build $name failed with status $st"
			pause
			;;
		esac
	done
}

network_start() {
	if ! ifconfig "$NETIF" >/dev/null 2>&1; then
		ifconfig "$NETIF" create
	fi
	if ! ifconfig "$NETIF" | grep -q "inet ${NETADDR%/*} "; then
		ifconfig "$NETIF" inet "$NETADDR" alias
	fi
	ifconfig "$NETIF" up
}

network_stop() {
	if ifconfig "$NETIF" >/dev/null 2>&1; then
		ifconfig "$NETIF" destroy
	fi
}

[ $# -ge 1 ] || usage
case $1 in
build | loop)
	[ $# -eq 2 ] || usage
	"$1" "$2"
	;;
network_start | network_stop)
	[ $# -eq 1 ] || usage
	"$1"
	;;
*)
	usage
	;;
esac
