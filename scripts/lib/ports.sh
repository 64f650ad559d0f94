# Loopback port helpers, sourced by the scripts that start servers (start-services.sh,
# bench.sh, soak.sh).

# Whether something accepts connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port in 20000-49999 that nothing listens on now.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    port_open "$p" || { echo "$p"; return; }
  done
}
