#!/bin/sh
# openssh-server's install made host keys; an image must not share them
# between machines. cosa-ssh-host-keys.service makes new ones on first boot.
set -eu
rm -f /etc/ssh/ssh_host_*
