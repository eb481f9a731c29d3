#!/bin/sh
# Entry point of the locally built Redis image (`cargo xtask images build`): like the
# official image's, it runs redis-server as the redis user in /data, and turns protected
# mode off when no config file is given (the port is published on loopback only).
set -eu

if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    mkdir -p /data
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = redis-server ]; then
    case " $* " in
        *" --protected-mode "*) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
fi

exec "$@"
