// netprobe: what a Pod of the node's cluster sees of the network, for the tests in
// tests/node.rs (through `kubectl exec`). Built statically into a FROM-scratch image by
// tests/control-plane/build.sh; Go's own resolver reads the /etc/resolv.conf the kubelet
// writes, as most programs in Pods do.
//
//	netprobe serve                      stay up until SIGTERM (the Pod's main process)
//	netprobe resolve NAME...            print "NAME ADDRESS..." per name; fail on the first miss
//	netprobe get [-ca FILE] [-token FILE] URL
//	                                    GET URL; print the status code, then the body's first 64 KiB
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: netprobe serve | resolve NAME... | get [-ca FILE] [-token FILE] URL")
	}
	switch os.Args[1] {
	case "serve":
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
	case "resolve":
		resolve(os.Args[2:])
	case "get":
		get(os.Args[2:])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func resolve(names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range names {
		addresses, err := net.DefaultResolver.LookupHost(ctx, name)
		if err != nil {
			fail(fmt.Sprintf("%s: %v", name, err))
		}
		fmt.Printf("%s %s\n", name, strings.Join(addresses, " "))
	}
}

func get(args []string) {
	flags := flag.NewFlagSet("get", flag.ExitOnError)
	ca := flags.String("ca", "", "PEM file of the CA to verify the server with")
	token := flags.String("token", "", "file holding a bearer token")
	flags.Parse(args)
	if flags.NArg() != 1 {
		fail("get takes one URL")
	}
	transport := &http.Transport{}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			fail(err.Error())
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		transport.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	request, err := http.NewRequest(http.MethodGet, flags.Arg(0), nil)
	if err != nil {
		fail(err.Error())
	}
	if *token != "" {
		bearer, err := os.ReadFile(*token)
		if err != nil {
			fail(err.Error())
		}
		request.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(bearer)))
	}
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
	response, err := client.Do(request)
	if err != nil {
		fail(err.Error())
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(response.Body, 64<<10))
	fmt.Printf("%d\n%s", response.StatusCode, body)
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "netprobe:", message)
	os.Exit(1)
}
