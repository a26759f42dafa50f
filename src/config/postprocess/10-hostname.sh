#!/bin/sh
# Runs inside the composed root, with no network, before the OSTree commit.
set -eu
echo debian-ostree > /etc/hostname
printf '127.0.1.1\tdebian-ostree\n' >> /etc/hosts
