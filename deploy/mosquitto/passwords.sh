#!/bin/sh
# Writes Mosquitto's password file, the path given as $1, from WMHUB_MQTT_PASSWORD and
# HOMEASSISTANT_MQTT_PASSWORD (entrypoint.sh, at every start; a test runs it as it is).
#
# WMHUB_MQTT_PASSWORD is also the password in the hub's URL (docker-compose.yml:
# mqtt://wmhub:${WMHUB_MQTT_PASSWORD}@...), which the hub percent-decodes. So the value is written as it
# appears in a URL, and decoded here the same way before it is hashed: the broker and the hub then hold the
# same password. A value the URL cannot carry is refused here in one line, before the hub would fail to log
# in for ever. Plain POSIX sh: the image's shell is busybox ash.
set -eu
passwords=${1:?usage: passwords.sh PASSWORD_FILE}

refuse() {
    echo "WMHUB_MQTT_PASSWORD $1; it is also the password in the hub's URL, so write / as %2F, ? as %3F, # as %23, [ as %5B, ] as %5D, a comma as %2C, a space as %20, % as %25; or make one of letters and digits: openssl rand -hex 24 (docs/mqtt.md)" >&2
    exit 1
}

# Sets $decoded to $1 percent-decoded as the hub decodes its URL's password (Python's urllib.parse.unquote),
# or refuses what the hub would refuse or read otherwise. Only printable ASCII is decoded (%20 to %7E):
# another character is written as itself.
decode_url_password() {
    rest=$1
    decoded=
    while [ -n "$rest" ]; do
        case $rest in
        %[0-9A-Fa-f][0-9A-Fa-f]*)
            hex=${rest#%}
            hex=${hex%"${hex#??}"}
            code=$((0x$hex))
            if [ "$code" -lt 32 ] || [ "$code" -gt 126 ]; then
                refuse "holds %$hex, which is not a printable ASCII character (write others as they are)"
            fi
            decoded=$decoded$(printf "\\$(printf %o "$code")")
            rest=${rest#???}
            ;;
        %*) refuse "holds a % not followed by two hex digits" ;;
        [/?#,]* | \[* | \]* | \ *) refuse "holds a character a URL gives a meaning to, or a space" ;;
        *)
            decoded=$decoded${rest%"${rest#?}"}
            rest=${rest#?}
            ;;
        esac
    done
}

umask 077
rm -f "$passwords" # a refused value leaves no earlier password valid
decode_url_password "${WMHUB_MQTT_PASSWORD:?set WMHUB_MQTT_PASSWORD in .env}"
mosquitto_passwd -c -b "$passwords" wmhub "$decoded"
mosquitto_passwd -b "$passwords" homeassistant "${HOMEASSISTANT_MQTT_PASSWORD:?set HOMEASSISTANT_MQTT_PASSWORD in .env}"
chown mosquitto:mosquitto "$passwords" 2>/dev/null || true
