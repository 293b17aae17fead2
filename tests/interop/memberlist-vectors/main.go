// Command memberlist-vectors runs Go memberlist (0.2.2, Debian's golang-github-hashicorp-
// memberlist-dev) in one process and prints the traffic its members exchange, for the
// message kinds a serf capture does not show: the TCP fallback ping and its ack (UDP to one
// member is dropped), reliable user messages on a stream (compressed and not), the error
// answer to an unexpected encrypted stream, and encrypted datagrams and streams (a keyring).
//
// Each member's transport is the ordinary NetTransport behind a recorder: every datagram it
// writes, and both directions of every stream it dials, are printed as
//
//	udp <from> <to> <hex>
//	tcp <conn> req|resp <to> <hex>
//
// the format of tests/interop/capture-serf.py. Lines starting with # are comments.
//
// Build and run (GOPATH mode, see run-memberlist-vectors.sh beside this folder).
package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	outMu  sync.Mutex
	connID int
	names  = map[int]string{}
)

func emit(format string, args ...interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func nameOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "?"
	}
	port, _ := strconv.Atoi(p)
	outMu.Lock()
	defer outMu.Unlock()
	if n, ok := names[port]; ok {
		return n
	}
	return "?"
}

// recorder wraps a transport and prints what passes through it.
type recorder struct {
	*memberlist.NetTransport
	name    string
	dropUDP map[string]bool // destination names whose datagrams are dropped
	mu      sync.Mutex
}

func (r *recorder) WriteTo(b []byte, addr string) (time.Time, error) {
	to := nameOf(addr)
	r.mu.Lock()
	drop := r.dropUDP[to]
	r.mu.Unlock()
	if drop {
		return time.Now(), nil
	}
	emit("udp %s %s %s", r.name, to, hex.EncodeToString(b))
	return r.NetTransport.WriteTo(b, addr)
}

// WriteToAddress and DialAddressTimeout are what memberlist calls on a node-aware transport
// (NetTransport is one): they go through the recording versions.
func (r *recorder) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return r.WriteTo(b, a.Addr)
}

func (r *recorder) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return r.DialTimeout(a.Addr, timeout)
}

func (r *recorder) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := r.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	outMu.Lock()
	connID++
	id := connID
	outMu.Unlock()
	return &recConn{Conn: c, id: id, to: nameOf(addr)}, nil
}

// recConn records what the dialing side wrote (req) and read (resp), printed on Close.
type recConn struct {
	net.Conn
	id        int
	to        string
	req, resp bytes.Buffer
	once      sync.Once
}

func (c *recConn) Write(b []byte) (int, error) {
	c.req.Write(b)
	return c.Conn.Write(b)
}

func (c *recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.resp.Write(b[:n])
	return n, err
}

func (c *recConn) Close() error {
	c.once.Do(func() {
		if c.req.Len() > 0 {
			emit("tcp %d req %s %s", c.id, c.to, hex.EncodeToString(c.req.Bytes()))
		}
		if c.resp.Len() > 0 {
			emit("tcp %d resp %s %s", c.id, c.to, hex.EncodeToString(c.resp.Bytes()))
		}
	})
	return c.Conn.Close()
}

type delegate struct {
	meta []byte
	got  chan []byte
}

func (d *delegate) NodeMeta(limit int) []byte                  { return d.meta }
func (d *delegate) NotifyMsg(b []byte)                         { d.got <- append([]byte(nil), b...) }
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return []byte("state of " + string(d.meta)) }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func start(name string, port int, compress bool, key []byte) (*memberlist.Memberlist, *recorder, *delegate) {
	outMu.Lock()
	names[port] = name
	outMu.Unlock()
	quiet := log.New(ioutil.Discard, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		BindPort:  port,
		Logger:    quiet,
	})
	if err != nil {
		panic(err)
	}
	rec := &recorder{NetTransport: nt, name: name, dropUDP: map[string]bool{}}
	d := &delegate{meta: []byte("meta-" + name), got: make(chan []byte, 16)}
	cfg := memberlist.DefaultLocalConfig()
	cfg.Name = name
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = port
	cfg.AdvertiseAddr = "127.0.0.1"
	cfg.AdvertisePort = port
	cfg.Transport = rec
	cfg.Delegate = d
	cfg.EnableCompression = compress
	cfg.Logger = quiet
	cfg.ProbeInterval = 200 * time.Millisecond
	if key != nil {
		kr, err := memberlist.NewKeyring(nil, key)
		if err != nil {
			panic(err)
		}
		cfg.Keyring = kr
	}
	m, err := memberlist.Create(cfg)
	if err != nil {
		panic(err)
	}
	return m, rec, d
}

func member(m *memberlist.Memberlist, name string) *memberlist.Node {
	for _, n := range m.Members() {
		if n.Name == name {
			return n
		}
	}
	panic("no member " + name)
}

func main() {
	base := 17800
	if len(os.Args) > 1 {
		base, _ = strconv.Atoi(os.Args[1])
	}
	fmt.Println("# Traffic of Go memberlist 0.2.2, printed by tests/interop/memberlist-vectors")
	fmt.Println("# x, y: compression on; z: compression off; x-y UDP dropped both ways for 2 s (TCP pings)")
	fmt.Println("# user messages: x->y reliable \"reliable hello\", z->x reliable \"plain hello\", x->z best-effort \"packet hello\"")
	fmt.Println("# q, r: keyring (AES-256, key 0x01..0x20), encrypted traffic; s dials z (no keyring) with an encrypted-stream header -> errResp")
	x, rx, _ := start("x", base, true, nil)
	y, ry, dy := start("y", base+1, true, nil)
	z, _, dz := start("z", base+2, false, nil)
	if _, err := y.Join([]string{"127.0.0.1:" + strconv.Itoa(base)}); err != nil {
		panic(err)
	}
	if _, err := z.Join([]string{"127.0.0.1:" + strconv.Itoa(base)}); err != nil {
		panic(err)
	}
	time.Sleep(time.Second)
	// Blocked UDP between x and y: probes fall back to TCP pings.
	rx.mu.Lock()
	rx.dropUDP["y"] = true
	rx.mu.Unlock()
	ry.mu.Lock()
	ry.dropUDP["x"] = true
	ry.mu.Unlock()
	time.Sleep(2 * time.Second)
	rx.mu.Lock()
	delete(rx.dropUDP, "y")
	rx.mu.Unlock()
	ry.mu.Lock()
	delete(ry.dropUDP, "x")
	ry.mu.Unlock()
	if err := x.SendReliable(member(x, "y"), []byte("reliable hello")); err != nil {
		panic(err)
	}
	if err := z.SendReliable(member(z, "x"), []byte("plain hello")); err != nil {
		panic(err)
	}
	if err := x.SendBestEffort(member(x, "z"), []byte("packet hello")); err != nil {
		panic(err)
	}
	for _, ch := range []chan []byte{dy.got, dz.got} {
		select {
		case <-ch:
		case <-time.After(3 * time.Second):
			panic("a user message did not arrive")
		}
	}
	time.Sleep(500 * time.Millisecond)

	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i + 1)
	}
	q, _, _ := start("q", base+3, true, key)
	r, _, _ := start("r", base+4, true, key)
	if _, err := r.Join([]string{"127.0.0.1:" + strconv.Itoa(base+3)}); err != nil {
		panic(err)
	}
	time.Sleep(time.Second)
	// An encrypted-stream header sent to a member without a keyring: it answers errResp.
	s, rs, _ := start("s", base+5, false, nil)
	c, err := rs.DialTimeout("127.0.0.1:"+strconv.Itoa(base+2), time.Second)
	if err != nil {
		panic(err)
	}
	c.Write([]byte{10, 0, 0, 0, 4, 1, 2, 3, 4})
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(ioutil.Discard, c)
	c.Close()
	for _, m := range []*memberlist.Memberlist{x, y, z, q, r, s} {
		m.Shutdown()
	}
}
