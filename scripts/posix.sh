#!/bin/sh
# posix.sh SOURCE WORKDIR PARTFS S3UTIL MINIO HOST PORT
#
# The body of `make posix`: builds pjdfstest from SOURCE (its source tree or
# a .tar.gz of it) under WORKDIR, starts a MinIO of its own on HOST:PORT
# with its data under WORKDIR, mounts a fresh bucket there with
# --allow-other (the suite switches users), runs the groups below through
# pjdfstest-count.sh, then unmounts and stops MinIO, also when a step fails.
set -eu
src=$1 work=$2 partfs=$3 s3util=$4 minio=$5 host=$6 port=$7
groups="open unlink mkdir rmdir rename truncate ftruncate chmod chown utimensat symlink"
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
	echo "make posix must run as root: pjdfstest changes users and makes device nodes" >&2
	exit 1
fi
for tool in autoreconf cc make prove; do
	command -v $tool >/dev/null 2>&1 || {
		echo "make posix needs $tool (apt-get install autoconf automake gcc make perl)" >&2
		exit 1
	}
done

rm -rf "$work"
mkdir -p "$work/data" "$work/mnt" "$work/build"
if [ -d "$src" ]; then
	cp -R "$src/." "$work/build/"
else
	tar -xzf "$src" -C "$work/build"
fi
# A tarball holds one top directory; a source tree is the directory itself.
pjd=$(dirname "$(find "$work/build" -maxdepth 2 -name configure.ac | head -n 1)")
[ -f "$pjd/configure.ac" ] || { echo "no pjdfstest source (configure.ac) in $src" >&2; exit 1; }
echo "building pjdfstest in $pjd"
(cd "$pjd" && autoreconf -ifs && ./configure && make pjdfstest) >"$work/build.log" 2>&1 || {
	tail -n 20 "$work/build.log"
	exit 1
}

user=partfs-posix secret=partfs-posix-secret
export AWS_ACCESS_KEY_ID=$user AWS_SECRET_ACCESS_KEY=$secret AWS_REGION=us-east-1
endpoint=http://$host:$port
minio_pid=""
cleanup() {
	if mountpoint -q "$work/mnt"; then
		umount "$work/mnt" || umount -l "$work/mnt"
	fi
	if [ -n "$minio_pid" ] && kill -0 "$minio_pid" 2>/dev/null; then
		kill "$minio_pid"
		for _ in $(seq 50); do kill -0 "$minio_pid" 2>/dev/null || break; sleep 0.2; done
	fi
}
trap cleanup EXIT INT TERM

echo "starting MinIO on $endpoint, data in $work/data"
MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$secret MINIO_BROWSER=off MINIO_UPDATE=off \
	"$minio" server --quiet --address "$host:$port" --console-address "$host:$((port + 1))" \
	"$work/data" >"$work/minio.log" 2>&1 </dev/null &
minio_pid=$!
"$s3util" -endpoint "$endpoint" wait || { cat "$work/minio.log"; exit 1; }
"$s3util" -endpoint "$endpoint" mb posix
"$partfs" --endpoint "$endpoint" --allow-other posix "$work/mnt"

echo "running pjdfstest ($groups) in $work/mnt"
# shellcheck disable=SC2086 # the groups are words
"$here/pjdfstest-count.sh" "$pjd" "$work/mnt" $groups
