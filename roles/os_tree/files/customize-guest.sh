#!/bin/sh
# Make a node tree (after customize.sh TREE SUITE MIRROR guest) a virtual machine's: it boots from a disk labelled
# magellan-root, cloud-init reads its NoCloud seed (hostname, SSH key, network) from a disk labelled cidata, and it
# does at boot only what a node needs — under software emulation (TCG) every service costs seconds. Args: TREE.
set -eu
tree=$1

echo 'LABEL=magellan-root / ext4 errors=remount-ro 0 1' > "$tree/etc/fstab"
rm -f "$tree/etc/systemd/system/systemd-remount-fs.service"

cat > "$tree/etc/cloud/cloud.cfg.d/90_magellan.cfg" <<'EOS'
datasource_list: [NoCloud, None]
cloud_init_modules: [seed_random, write_files, growpart, resizefs, set_hostname, update_hostname, update_etc_hosts]
cloud_config_modules: []
cloud_final_modules: []
EOS
# The init stages apply the seed; the config and final stages would have nothing to do.
for unit in cloud-config.service cloud-final.service; do
  ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done

# Services and timers the packages enabled: the node roles enable what the node needs, when it is configured.
for unit in munge.service slurmd.service prometheus-node-exporter.service e2scrub_reap.service nfs-server.service \
  rpcbind.service nftables.service; do
  rm -f "$tree/etc/systemd/system/multi-user.target.wants/$unit"
done
rm -f "$tree/etc/systemd/system/sockets.target.wants/rpcbind.socket"
for unit in apt-daily-upgrade.timer apt-daily.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
  rm -f "$tree/etc/systemd/system/timers.target.wants/$unit"
done

# SysV init scripts of services that have a systemd unit: systemd runs the unit, never the script, but with a script
# beside it `systemctl enable` and `disable` also run update-rc.d (systemd-sysv-install): 32 s each under TCG, measured
# on a guest here, on top of the 20 s of the enable itself. Scripts without a unit stay (systemd-sysv-generator makes
# units of them).
for script in "$tree"/etc/init.d/*; do
  name=${script##*/}
  if [ -e "$tree/lib/systemd/system/$name.service" ] || [ -L "$tree/lib/systemd/system/$name.service" ]; then
    rm -f "$script" "$tree"/etc/rc?.d/[SK][0-9][0-9]"$name"
  fi
done

# One host key (ed25519): RSA key generation alone takes half a minute under TCG.
cat > "$tree/etc/systemd/system/ssh.service.d/10-hostkeys.conf" <<'EOS'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
ExecStartPre=/usr/sbin/sshd -t
EOS
echo 'HostKey /etc/ssh/ssh_host_ed25519_key' > "$tree/etc/ssh/sshd_config.d/10-magellan-hostkey.conf"

# apt's binary cache, built from the kept package lists: without it the first apt task on the guest parses the
# 50 MB Packages file under emulation (46 s measured under TCG).
chroot "$tree" apt-cache gencaches
