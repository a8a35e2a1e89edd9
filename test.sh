#!/usr/bin/env bash
# The test command (README.md, .ci/run): provides everything the tests need where it is missing on
# a Debian machine, then runs all of them. Nothing is skipped for a missing dependency.
#   1. Java 17 and Maven (apt), to run and fetch Apache Kafka;
#   2. MariaDB on 127.0.0.1:3306, root without a password, database `test` (apt, started here);
#   3. Debian's chromium (apt), the headless browser the console's end-to-end test drives;
#   4. the Kafka jars, copied from Maven Central into ${XDG_CACHE_HOME:-$HOME/.cache}/replay by
#      engine/kafkatest/fetch-kafka.sh (skipped when the cache is complete: works offline then);
#   5. go test -race -count=1 ./...   (extra arguments replace ./..., e.g. ./test.sh ./engine/)
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root apt-get install -y -qq "$@" >/dev/null
}

# Java and Maven.
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  echo "test.sh: installing Java and Maven"
  apt_install openjdk-17-jre-headless maven
fi

# MariaDB: the MySQL tests run against a real server on 127.0.0.1:3306 as root with no password.
tcp_login() { mysqladmin --protocol=tcp -h127.0.0.1 -uroot status >/dev/null 2>&1; }
alive() { mysqladmin --protocol=tcp -h127.0.0.1 ping >/dev/null 2>&1; } # answers even when login is refused
if ! tcp_login; then
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "test.sh: installing mariadb-server"
    apt_install mariadb-server mariadb-client
  fi
  if ! alive; then
    echo "test.sh: starting mariadbd"
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    # mariadbd refuses to run as root unless told which user to be (Debian's config does not say).
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    for _ in $(seq 1 60); do alive && break; sleep 1; done
    alive || { echo "test.sh: MariaDB did not come up on 127.0.0.1:3306" >&2; exit 1; }
  fi
  if ! tcp_login; then
    # A fresh Debian install lets root in only through the unix socket: allow it over TCP too.
    echo "test.sh: allowing root over TCP without a password"
    as_root mysql --protocol=socket -uroot -e "
      ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
      FLUSH PRIVILEGES;"
  fi
  tcp_login || { echo "test.sh: cannot log in to MariaDB on 127.0.0.1:3306 as root" >&2; exit 1; }
fi
mysql --protocol=tcp -h127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'

# Chromium: the console's end-to-end test (replayd/server) drives it headless.
if ! command -v chromium >/dev/null; then
  echo "test.sh: installing chromium"
  apt_install chromium
fi

# The Kafka jars (engine/kafkatest).
bash engine/kafkatest/fetch-kafka.sh

if [ $# -eq 0 ]; then set -- ./...; fi
exec go test -race -count=1 "$@"
