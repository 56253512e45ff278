module flashback-operator.local/netprobe

go 1.26.0
