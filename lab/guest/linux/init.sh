#!/bin/busybox sh
# /init of the lab's Linux guest (initramfs): mount the kernel filesystems, load the virtio drivers (the
# Debian cloud kernel has them as modules), bring the NIC up with the address from the kernel command line
# (ferry.ip=A.B.C.D/N), then run the workload. Kernel messages and the workload's log go to ttyS0.
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_pci virtio_blk virtio_net; do modprobe "$m" || echo "ferry-guest: modprobe $m failed"; done
ip=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in ferry.ip=*) ip="${arg#ferry.ip=}" ;; esac
done
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set lo up
if [ -n "$ip" ]; then
  ip link set eth0 up && ip addr add "$ip" dev eth0 || echo "ferry-guest: cannot configure eth0 with $ip"
fi
echo "ferry-guest: up in $(cut -d' ' -f1 /proc/uptime) s"
exec /bin/ferry-guest agent
