// memberlist-peer: one Go memberlist 0.2.2 member for the live interop tests
// (tests/tests/memberlist_interop.rs). It runs with memberlist's local configuration (its
// LAN configuration with -lan),
// joins the addresses it is given, and reports on stdout, one line each:
//
//	ready <name> <addr:port>
//	join <name> <addr:port>        a member became known (NotifyJoin)
//	leave <name>                   a member was failed or left (NotifyLeave; memberlist
//	                               0.2.2 does not tell which: Node.State stays zero)
//	update <name>                  a member's meta changed (NotifyUpdate)
//	members <n>                    answer to the `members` command: how many are live
//	msg <text>                     a user message arrived (the delegate's NotifyMsg)
//	sent <how> <name>              a `send`/`sendbe` command's message went out
//
// With -key the member encrypts with memberlist's SecretKey (AES-GCM, its own format).
// Commands on stdin: `members`, `send <name> <text>` (SendReliable: a stream user message),
// `sendbe <name> <text>` (SendBestEffort: a datagram), `leave` (a graceful leave, then
// exit), `quit`.
// Memberlist's own log goes to stderr.
package main

import (
	"bufio"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

var out sync.Mutex

func say(format string, args ...interface{}) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

type events struct{}

func addr(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

func (events) NotifyJoin(n *memberlist.Node) { say("join %s %s", n.Name, addr(n)) }

func (events) NotifyLeave(n *memberlist.Node) { say("leave %s", n.Name) }

func (events) NotifyUpdate(n *memberlist.Node) { say("update %s", n.Name) }

// delegate hands user messages to stdout and has no meta, broadcasts or state of its own
// (so the member's meta and push-pull are what they are without a delegate).
type delegate struct{}

func (delegate) NodeMeta(limit int) []byte                  { return nil }
func (delegate) NotifyMsg(b []byte)                         { say("msg %s", string(b)) }
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// send sends text to the member named to, reliably or best-effort.
func send(m *memberlist.Memberlist, reliable bool, to, text string) {
	for _, n := range m.Members() {
		if n.Name != to {
			continue
		}
		var err error
		how := "reliable"
		if reliable {
			err = m.SendReliable(n, []byte(text))
		} else {
			how = "besteffort"
			err = m.SendBestEffort(n, []byte(text))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "send:", err)
			return
		}
		say("sent %s %s", how, to)
		return
	}
	fmt.Fprintln(os.Stderr, "send: no member named", to)
}

func main() {
	name := flag.String("name", "", "member name")
	bind := flag.String("bind", "127.0.0.1:7946", "address:port to bind and advertise")
	join := flag.String("join", "", "comma-separated addresses to join")
	lan := flag.Bool("lan", false, "memberlist's LAN configuration instead of its local one")
	key := flag.String("key", "", "base64 AES key: encrypt as memberlist does (SecretKey)")
	flag.Parse()

	host, port, err := net.SplitHostPort(*bind)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad -bind:", err)
		os.Exit(2)
	}
	p, _ := strconv.Atoi(port)
	conf := memberlist.DefaultLocalConfig()
	if *lan {
		conf = memberlist.DefaultLANConfig()
	}
	conf.Name = *name
	conf.BindAddr = host
	conf.BindPort = p
	conf.AdvertiseAddr = host
	conf.AdvertisePort = p
	if *key != "" {
		k, err := base64.StdEncoding.DecodeString(*key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad -key:", err)
			os.Exit(2)
		}
		conf.SecretKey = k
	}
	conf.Events = events{}
	conf.Delegate = delegate{}
	conf.LogOutput = os.Stderr
	m, err := memberlist.Create(conf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "create:", err)
		os.Exit(1)
	}
	say("ready %s %s", *name, *bind)
	if *join != "" {
		n, err := m.Join(strings.Split(*join, ","))
		if err != nil {
			fmt.Fprintln(os.Stderr, "join:", err)
			os.Exit(1)
		}
		say("joined %d", n)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if f := strings.SplitN(line, " ", 3); len(f) == 3 && (f[0] == "send" || f[0] == "sendbe") {
			send(m, f[0] == "send", f[1], f[2])
			continue
		}
		switch line {
		case "members":
			say("members %d", len(m.Members()))
		case "leave":
			if err := m.Leave(5 * time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "leave:", err)
			}
			m.Shutdown()
			say("bye")
			return
		case "quit":
			m.Shutdown()
			return
		}
	}
	// stdin closed: the test is gone; stop without a leave.
	m.Shutdown()
}
