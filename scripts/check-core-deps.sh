#!/usr/bin/env bash
# Keeps the core crate (core/, `slawatch-core`) pure: its normal dependency tree may hold only
# the crates allowed below, and it must compile on its own, where chrono has no clock.
#
# The core owns every SLA rule; it must never reach an async runtime, a database, a mail or HTTP
# client or server, a logging backend or the system clock. A crate that is not on the list fails
# this check: read what it pulls in, and either keep it out of the core or add it here with a
# reason in the commit.
set -euo pipefail
cd "$(dirname "$0")/.."

# Never, whatever else changes: the I/O stacks the daemon uses.
forbidden="tokio tokio-util mio socket2 sqlx sqlx-core lettre axum hyper reqwest async-imap
  tracing-subscriber rustls tokio-rustls prometheus iana-time-zone mimalloc"

# Everything the core may depend on, directly or not (crate names, any version).
allowed="slawatch-core
  chrono chrono-tz num-traits phf phf_shared siphasher
  serde serde_core serde_derive serde_json itoa memchr zmij
  sha2 digest block-buffer crypto-common generic-array typenum cpufeatures cfg-if
  hex smol_str thiserror thiserror-impl
  whatlang once_cell
  mail-parser encoding_rs hashify
  phonenumber regex regex-automata regex-syntax aho-corasick regex-cache lru-cache
  linked-hash-map oncemutex nom minimal-lexical either fnv quick-xml
  postcard cobs heapless hash32 byteorder stable_deref_trait spin lock_api scopeguard
  strum strum_macros heck
  hashbrown allocator-api2 foldhash equivalent indexmap
  simdutf8 core_detect multiversion_no_op
  proc-macro2 quote syn unicode-ident"

tree=$(cargo tree --locked -p slawatch-core -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
status=0
for crate in $tree; do
  for bad in $forbidden; do
    if [ "$crate" = "$bad" ]; then
      echo "core crate depends on $crate (an I/O crate): $(cargo tree --locked -p slawatch-core -e normal -i "$crate" 2>/dev/null | head -5 | tr '\n' ' ')" >&2
      status=1
    fi
  done
  case " $(echo $allowed) " in
    *" $crate "*) ;;
    *) echo "core crate depends on $crate, which is not on the allow-list in $0" >&2; status=1 ;;
  esac
done
[ "$status" -eq 0 ] || exit "$status"

# On its own (no feature unification with the daemon), the core compiles without chrono's clock.
cargo check --locked -p slawatch-core --lib --quiet
echo "core crate: $(echo "$tree" | wc -l) crates, all allowed; compiles without I/O or a clock"
