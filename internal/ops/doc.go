// Package ops is the plumbing the two daemons (mpsa-hub, mpsa-cpe) share:
// logging set up the way docs/LOGGING.md fixes it, a status server on a Unix
// socket that `mpsa-hub status` and `mpsa-cpe status` query, text rendering
// in the style of `swanctl --list-sas`, signal handling, version strings, the
// adapter that lets the IKE engine use a data plane's port-4500 conn, and the
// conversion between IKE and MPSA notifies.
//
// It depends on the standard library and on packages the CPE binary links
// anyway (configs, ike/wire, mpsa): no Prometheus, no Viper, no gRPC, so the
// CPE stays within its size budget (docs/BENCHMARKS.md, "configs").
//
// # Status protocol
//
// A client connects to the daemon's Unix socket (mode 0600, so only root, or
// whoever runs the daemon, can ask), writes one Request as a JSON object on
// one line and reads one Response as a JSON object on one line; then the
// server closes the connection.
//
//	→ {"command":"sas","format":"text"}
//	← {"ok":true,"text":"cpe1.example.net: #1, ESTABLISHED, ..."}
//
// Command names a view the daemon registered with StatusServer.Handle
// (the hub has sas, groups, cpes, bgp, routes, and rekey, which rolls a group
// over: only whoever may open the socket may do that); Args are the words
// after it on the command line (CommandMain runs one command as a subcommand
// of its own, `mpsa-hub rekey GROUP`). Format "text" (the default) asks for the rendering a
// human reads, "json" for the view's data as a JSON value in Data. A
// Response with OK false carries Error instead. Requests are at most
// MaxRequestSize octets; a connection that does not send a complete request
// within RequestTimeout is closed; at most MaxConns connections are served at
// once, later ones wait in the listen queue.
//
// # Logging
//
// NewLogger builds the slog.Logger both daemons log through, from the
// configuration's log section: text or JSON to the given writer, at a level
// that a reload can change (Logger.SetLevel). Attribute keys are the fixed
// field names of docs/LOGGING.md (Fields); FieldCheck wraps a handler to
// count any other key, so tests can hold the daemons to the list.
package ops
