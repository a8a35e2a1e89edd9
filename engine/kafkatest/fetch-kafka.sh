#!/usr/bin/env bash
# Copies the runtime classpaths of the Kafka broker and tools (maven/broker/pom.xml) and of
# MirrorMaker 2 (maven/mirror/pom.xml) from Maven Central into the cache the Go tests read:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/replay/kafka-<version>/lib/*.jar
#   ${XDG_CACHE_HOME:-$HOME/.cache}/replay/connect-mirror-<version>/lib/*.jar
# A classpath whose copy completed (its .complete marker holds the pom's checksum) is not fetched
# again, so this works offline once it has run. Needs Java and Maven (mvn) on the PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/replay"

fetch() { # fetch POM NAME: copy POM's runtime classpath into $cache/NAME/lib
  local pom="$1" dir="$cache/$2" sum
  sum="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$sum" ]; then
    return 0
  fi
  echo "fetch-kafka: copying the classpath of $pom into $dir/lib" >&2
  local tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mvn -B -ntp -q -Dstyle.color=never -f "$pom" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >&2
  echo "$sum" >"$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
}

version() { sed -n "s:.*<$2>\(.*\)</$2>.*:\1:p" "$1" | head -1; }

broker_pom="$here/maven/broker/pom.xml"
mirror_pom="$here/maven/mirror/pom.xml"
fetch "$broker_pom" "kafka-$(version "$broker_pom" kafka.version)"
fetch "$mirror_pom" "connect-mirror-$(version "$mirror_pom" mirror.version)"
