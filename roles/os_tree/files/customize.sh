#!/bin/sh
# Customise a fresh mmdebstrap tree so that it boots as a node: systemd as init, sshd reachable with a key
# supplied at run time, per-node SSH host keys, apt sources for the suite. Args: TREE SUITE MIRROR [KIND]; KIND
# node or guest (customize-guest.sh then makes the tree a guest's).
set -eu
tree=$1 suite=$2 mirror=$3 kind=${4:-node}

cat > "$tree/etc/apt/sources.list" <<EOS
deb $mirror $suite main
deb $mirror $suite-updates main
EOS
cat > "$tree/etc/apt/apt.conf.d/90magellan" <<'EOS'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOS

# Node trees (with sshd and systemd) boot as nodes; other trees (CHOS environments) only need apt.
if [ -f "$tree/etc/ssh/sshd_config" ]; then
# Every node must have its own SSH host keys: drop the tree's, generate at first start.
rm -f "$tree"/etc/ssh/ssh_host_*
mkdir -p "$tree/etc/systemd/system/ssh.service.d"
cat > "$tree/etc/systemd/system/ssh.service.d/10-hostkeys.conf" <<'EOS'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOS
mkdir -p "$tree/etc/systemd/system/multi-user.target.wants"
ln -sf /lib/systemd/system/ssh.service "$tree/etc/systemd/system/multi-user.target.wants/ssh.service"

# Root logs in with a key only; the key is bind-mounted by whoever starts the node.
install -d -m 0700 "$tree/root/.ssh"
sed -i 's/^#\?PermitRootLogin.*/PermitRootLogin prohibit-password/' "$tree/etc/ssh/sshd_config"
sed -i 's/^#\?UseDNS.*/UseDNS no/' "$tree/etc/ssh/sshd_config"

# Units that have nothing to do in a container node.
for unit in getty@tty1.service systemd-remount-fs.service console-getty.service; do
  ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done

# Services that the extra packages enabled (munge, slurmd, mariadb, prometheus...): a node role enables what its
# node runs, once it is configured. A guest's are handled by customize-guest.sh.
if [ "$kind" = node ]; then
  for link in "$tree"/etc/systemd/system/multi-user.target.wants/*.service \
    "$tree"/etc/systemd/system/sockets.target.wants/*.socket; do
    case ${link##*/} in
      ssh.service | e2scrub_reap.service) ;;
      *) rm -f "$link" ;;
    esac
  done
fi

fi

# No key may come with an image: munge's package makes one when it is installed, which every node and every site built
# from the tree would share. Role munge makes the cluster's on its key host and copies it to the others.
rm -f "$tree/etc/munge/munge.key"

: > "$tree/etc/machine-id"
rm -f "$tree/etc/hostname"
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/log/*.log
# Trees that boot (nodes and guests) keep mmdebstrap's package lists: the packages their roles install are in the
# tree, and an apt-get update on every node (under software emulation: minutes) would only find them there; the lists
# age out after the roles' cache_valid_time. Other trees (CHOS environments) have none: their first apt run refreshes
# them (cache_valid_time looks at this mtime).
if [ ! -f "$tree/etc/ssh/sshd_config" ]; then
  rm -rf "$tree"/var/lib/apt/lists/*_*
  rm -f "$tree"/var/lib/apt/periodic/update-success-stamp
  touch -d @0 "$tree/var/lib/apt/lists"
fi
