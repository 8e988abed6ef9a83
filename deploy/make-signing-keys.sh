#!/usr/bin/env sh
# Make the keys and certificates for signed messages (README: "Signed messages").
#
#   deploy/make-signing-keys.sh DIR NAME...     e.g. deploy/make-signing-keys.sh /etc/fleetjobs/signing ops web01 web02
#
# For each NAME (a console or a beat: what starts jobs): DIR/NAME.key (its private key: keep it
# on that machine only, mode 0600) and DIR/trusted/NAME.pem (its certificate). Every process
# trusts the certificates in DIR/trusted (FLEETJOBS_CERT_STORE); copy that folder to every
# machine. A console or beat also gets its own key and certificate:
#
#   FLEETJOBS_SIGNING_KEY=DIR/NAME.key
#   FLEETJOBS_SIGNING_CERT=DIR/trusted/NAME.pem
#   FLEETJOBS_CERT_STORE=DIR/trusted
#
# A worker gets FLEETJOBS_CERT_STORE only: it verifies and signs nothing (no key to steal).
# To revoke a console, delete its certificate from every trusted folder and restart.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR NAME..." >&2; exit 2; }
dir=$1; shift
umask 077  # the keys: their owner's only
# the certificates are public, and every worker reads them as its own user (the systemd
# unit's fleetjobs, not root): the folders that hold them are everyone's to read
if [ ! -d "$dir" ]; then
    mkdir -p "$dir" && chmod 0755 "$dir"
elif [ "$(find "$dir" -maxdepth 0 -perm -o+x)" = "" ]; then
    echo "note: other users cannot enter $dir: a worker running as one cannot read" \
        "$dir/trusted (chmod o+x $dir, or copy that folder elsewhere)" >&2
fi
mkdir -p "$dir/trusted" && chmod 0755 "$dir/trusted"
for name in "$@"; do
    openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes \
        -keyout "$dir/$name.key" -out "$dir/trusted/$name.pem" \
        -subj "/CN=fleetjobs $name" 2>/dev/null
    chmod 0644 "$dir/trusted/$name.pem"
    echo "$dir/$name.key  $dir/trusted/$name.pem"
done
