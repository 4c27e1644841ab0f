// Command server runs the embedded store (FerretDB, SQLite backend) for
// the integration tests in a process of its own. storetest builds it
// without the race detector: the tests' own code is checked for races,
// while the store, which the service embeds unchanged, runs at full speed
// (under -race its SQLite engine was the bulk of the suite's time).
//
//	server -dir DIR
//
// prints the server's mongodb:// URI on stdout, then serves until its
// stdin closes (the test binary ended, however it ended). Each line
// "index DB" on stdin adds the _id lookup index to database DB
// (embedded.Server.IndexIDs) and is answered "ok" or the error on stdout.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kapfhir/kapfhir/internal/embedded"
)

func main() {
	dir := flag.String("dir", "", "directory of the store's files")
	flag.Parse()
	srv, err := embedded.Start(*dir, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "store server:", err)
		os.Exit(1)
	}
	fmt.Println(srv.URI())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		db, ok := strings.CutPrefix(in.Text(), "index ")
		reply := "ok"
		if !ok {
			reply = "unknown request"
		} else if err := srv.IndexIDs(context.Background(), db); err != nil {
			reply = strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Println(reply)
	}
	srv.Close()
}
