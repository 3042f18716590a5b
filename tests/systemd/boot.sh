#!/bin/bash
# Boot a private systemd for the tests in this folder, without touching the host.
#
#   boot.sh ROOT          (as root) ROOT holds units/ (copied to the namespace's
#                         /run/systemd/system), varlib/ (mounted on /var/lib) and gets
#                         boot.log (this script's errors) and cgroup (the host path of
#                         the cgroup it runs in, for cleaning up).
#
# The outer half moves itself into a fresh cgroup and re-executes this script as PID 1 of new
# PID, mount, UTS, network and cgroup namespaces. The inner half gives that mount namespace
# its own /run, /tmp and /var/tmp (fresh tmpfs: systemd's tmpfiles set-up empties /tmp) and
# /var/lib, a cgroup2 file system of its own, then execs systemd. Any failure before the exec
# aborts (set -e): systemd is never started on the host's /tmp.
set -euo pipefail

die() { echo "boot.sh: $*" >&2; exit 1; }

if [ "${1:-}" != "--inside" ]; then
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    ROOT=${1:?usage: boot.sh ROOT}
    ROOT=$(realpath -e "$ROOT")
    case "$ROOT/" in
        /tmp/*|/var/tmp/*|/run/*|/dev/*|/proc/*|/sys/*|/) die "ROOT must not be under /tmp, /var/tmp, /run, /dev, /proc or /sys: $ROOT" ;;
    esac
    [ -d "$ROOT/units" ] && [ -d "$ROOT/varlib" ] || die "$ROOT needs units/ and varlib/"
    [ -x /lib/systemd/systemd ] || die "no /lib/systemd/systemd"
    exec >>"$ROOT/boot.log" 2>&1
    # A cgroup of our own, so this systemd's slices never meet another one's.
    if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
        cgroot=/sys/fs/cgroup
    elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        cgroot=/sys/fs/cgroup/unified
    else
        die "no cgroup2 file system at /sys/fs/cgroup or /sys/fs/cgroup/unified"
    fi
    cg="$cgroot/bcx-poller-systemd-test-$$"
    mkdir "$cg"
    echo "$cg" >"$ROOT/cgroup"
    echo $$ >"$cg/cgroup.procs"
    export BCX_HOST_MNTNS
    BCX_HOST_MNTNS=$(stat -L -c %i /proc/self/ns/mnt)
    exec unshare --pid --fork --kill-child --mount --mount-proc --uts --net --cgroup \
        --propagation private -- "$0" --inside "$ROOT"
fi

ROOT=${2:?}
# Refuse unless this really is a new PID and mount namespace.
[ "$$" -eq 1 ] || die "not PID 1 of a new PID namespace"
[ -n "${BCX_HOST_MNTNS:-}" ] || die "BCX_HOST_MNTNS unset"
[ "$(stat -L -c %i /proc/self/ns/mnt)" != "$BCX_HOST_MNTNS" ] || die "still in the host's mount namespace"

mount -n --make-rprivate /
for dir in /run /tmp /var/tmp; do
    mode=1777
    [ "$dir" = /run ] && mode=0755
    mount -n -t tmpfs -o "mode=$mode,nosuid,nodev" tmpfs "$dir"
done
# Check twice: each is a fresh, empty tmpfs before systemd may see it.
for dir in /run /tmp /var/tmp; do
    [ "$(stat -f -c %T "$dir")" = tmpfs ] || die "$dir is not a tmpfs"
    [ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
done
mount -n --bind "$ROOT/varlib" /var/lib
[ ! -e /var/lib/dpkg ] || die "/var/lib is still the host's"

# PID 1 resets and writes status lines to /dev/console: give it /dev/null, not the host's.
[ ! -e /dev/console ] || mount -n --bind /dev/null /dev/console

# cgroup2 as seen from the new cgroup namespace: this systemd's hierarchy starts at our cgroup.
if mountpoint -q /sys/fs/cgroup; then
    umount -n -R /sys/fs/cgroup
fi
mount -n -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup

# Nothing of the host's boot may run here (remount-fs, sysctl, sysusers, tmpfiles, udev,
# timesyncd, apt timers, ...): mask every generator and every unit some target of the host
# wants or requires. /run/systemd/system.control outranks /etc/systemd/system.
mkdir -p /run/systemd/system /run/systemd/system.control /run/systemd/system-generators
for g in /usr/lib/systemd/system-generators/* /lib/systemd/system-generators/* \
         /etc/systemd/system-generators/* /usr/local/lib/systemd/system-generators/*; do
    [ -e "$g" ] || [ -L "$g" ] || continue
    ln -sfn /dev/null "/run/systemd/system-generators/${g##*/}"
done
for w in /etc/systemd/system/*.wants/* /etc/systemd/system/*.requires/* \
         /usr/lib/systemd/system/*.wants/* /usr/lib/systemd/system/*.requires/* \
         /lib/systemd/system/*.wants/* /lib/systemd/system/*.requires/*; do
    [ -e "$w" ] || [ -L "$w" ] || continue
    case "${w##*/}" in *.target|*.slice) continue ;; esac
    ln -sfn /dev/null "/run/systemd/system.control/${w##*/}"
done
for u in systemd-remount-fs.service systemd-fsck-root.service systemd-tmpfiles-setup.service \
         systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.service \
         systemd-tmpfiles-clean.timer systemd-sysctl.service systemd-sysusers.service \
         systemd-modules-load.service systemd-binfmt.service systemd-timesyncd.service \
         systemd-update-utmp.service systemd-random-seed.service systemd-journald.service \
         systemd-journald.socket systemd-journald-dev-log.socket systemd-journald-audit.socket \
         systemd-journal-flush.service systemd-udevd.service systemd-udev-trigger.service \
         systemd-udev-settle.service systemd-networkd-wait-online.service \
         NetworkManager-wait-online.service systemd-firstboot.service \
         systemd-machine-id-commit.service systemd-repart.service kmod-static-nodes.service \
         ldconfig.service systemd-hwdb-update.service systemd-update-done.service \
         systemd-journal-catalog-update.service systemd-pstore.service; do
    ln -sfn /dev/null "/run/systemd/system.control/$u"
done
cp -R "$ROOT/units/." /run/systemd/system/

unset BCX_HOST_MNTNS
export container=bcx-poller-test
exec /lib/systemd/systemd --system --unit=bcx-test.target --log-target=console --show-status=no
