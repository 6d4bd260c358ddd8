#!/bin/sh
# Run in the guest by Envfile.example's provisioning (run: always): prints what the guest sees.
set -eu
echo "guest $(hostname) up as $(id -un) (uid $(id -u)); APP_ENV=${APP_ENV:-unset}"
