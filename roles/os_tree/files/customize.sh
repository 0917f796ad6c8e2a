#!/bin/sh
# Customise a fresh mmdebstrap tree so that it boots as a node: systemd as init, sshd reachable with a key
# supplied at run time, per-node SSH host keys, apt sources for the suite. Args: TREE SUITE MIRROR [KIND]; KIND
# guest keeps the package lists (customize-guest.sh then makes the tree a guest's).
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

fi

: > "$tree/etc/machine-id"
rm -f "$tree/etc/hostname"
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/log/*.log
# No package lists: the first apt run on a node must refresh them (cache_valid_time looks at this mtime). A guest
# keeps mmdebstrap's: the packages its roles install are in the tree, and apt-get update under software emulation
# takes minutes; they age out after the roles' cache_valid_time.
if [ "$kind" != guest ]; then
  rm -rf "$tree"/var/lib/apt/lists/*_*
  rm -f "$tree"/var/lib/apt/periodic/update-success-stamp
  touch -d @0 "$tree/var/lib/apt/lists"
fi
