package wire

// The rules below say which payloads each exchange may carry, in each
// direction, and how often (RFC 7296 §1.2-1.5, RFC 4555, RFC 7383), after the
// fashion of strongSwan's message.c tables. Check applies them, plus the
// semantic verify() of single payloads, before any state machine sees the
// message, so tasks can rely on the payloads they look up.

// many is the upper bound for payloads that may repeat.
const many = MaxPayloads

type rule struct {
	t        PayloadType
	min, max int
}

type ruleSet struct {
	// encrypted: everything but SK/SKF travels inside SK.
	encrypted bool
	rules     []rule
	// whole checks the message as a whole after the counts.
	whole func(ps []Payload) error
}

type ruleKey struct {
	exchange ExchangeType
	response bool
}

var rules = map[ruleKey]ruleSet{
	{IKESAInit, false}: {rules: []rule{
		{PayloadSA, 1, 1}, {PayloadKE, 1, 1}, {PayloadNonce, 1, 1},
		{PayloadN, 0, many}, {PayloadV, 0, many},
	}},
	{IKESAInit, true}: {rules: []rule{
		{PayloadSA, 0, 1}, {PayloadKE, 0, 1}, {PayloadNonce, 0, 1},
		{PayloadN, 0, many}, {PayloadV, 0, many}, {PayloadCERTREQ, 0, many},
	}, whole: requireUnlessNotify(PayloadSA, PayloadKE, PayloadNonce)},
	{IKEAuth, false}: {encrypted: true, rules: []rule{
		{PayloadIDi, 1, 1}, {PayloadCERT, 0, many}, {PayloadCERTREQ, 0, many},
		{PayloadIDr, 0, 1}, {PayloadAUTH, 1, 1}, {PayloadCP, 0, 1},
		{PayloadSA, 0, 1}, {PayloadTSi, 0, 1}, {PayloadTSr, 0, 1},
		{PayloadN, 0, many}, {PayloadV, 0, many},
	}, whole: allOrNone(PayloadSA, PayloadTSi, PayloadTSr)},
	{IKEAuth, true}: {encrypted: true, rules: []rule{
		{PayloadIDr, 0, 1}, {PayloadCERT, 0, many}, {PayloadAUTH, 0, 1},
		{PayloadCP, 0, 1}, {PayloadSA, 0, 1}, {PayloadTSi, 0, 1}, {PayloadTSr, 0, 1},
		{PayloadN, 0, many}, {PayloadV, 0, many},
	}, whole: both(requireUnlessNotify(PayloadIDr, PayloadAUTH), allOrNone(PayloadSA, PayloadTSi, PayloadTSr))},
	{CreateChildSA, false}: {encrypted: true, rules: []rule{
		{PayloadSA, 1, 1}, {PayloadNonce, 1, 1}, {PayloadKE, 0, 1},
		{PayloadTSi, 0, 1}, {PayloadTSr, 0, 1}, {PayloadN, 0, many}, {PayloadV, 0, many},
	}, whole: allOrNone(PayloadTSi, PayloadTSr)},
	{CreateChildSA, true}: {encrypted: true, rules: []rule{
		{PayloadSA, 0, 1}, {PayloadNonce, 0, 1}, {PayloadKE, 0, 1},
		{PayloadTSi, 0, 1}, {PayloadTSr, 0, 1}, {PayloadN, 0, many}, {PayloadV, 0, many},
	}, whole: both(requireUnlessNotify(PayloadSA, PayloadNonce), allOrNone(PayloadTSi, PayloadTSr))},
	{Informational, false}: {encrypted: true, rules: []rule{
		{PayloadN, 0, many}, {PayloadD, 0, many}, {PayloadCP, 0, 1}, {PayloadV, 0, many},
	}},
	{Informational, true}: {encrypted: true, rules: []rule{
		{PayloadN, 0, many}, {PayloadD, 0, many}, {PayloadCP, 0, 1}, {PayloadV, 0, many},
	}},
}

// IsProtected reports whether the payloads of exchange e travel inside SK.
// It is false for IKE_SA_INIT and for unknown exchanges.
func IsProtected(e ExchangeType) bool {
	return rules[ruleKey{e, false}].encrypted
}

// CheckOuter checks the top-level payloads of m: IKE_SA_INIT against its
// rules, any other exchange for exactly one SK or SKF payload (unknown
// non-critical payloads aside).
func CheckOuter(m *Message) error {
	rs, ok := rules[ruleKey{m.Exchange, m.IsResponse()}]
	if !ok {
		return syntaxError("unknown exchange %v", m.Exchange)
	}
	if !rs.encrypted {
		return check(rs, m.Payloads)
	}
	n := 0
	for _, p := range m.Payloads {
		switch p.(type) {
		case *Encrypted, *Fragment:
			n++
		case *Unknown:
		default:
			return syntaxError("%v outside SK in %v", p.Type(), m.Exchange)
		}
	}
	if n != 1 {
		return syntaxError("%v without SK payload", m.Exchange)
	}
	return nil
}

// CheckInner checks the payloads found inside the SK payload of a message of
// exchange e in direction response.
func CheckInner(e ExchangeType, response bool, ps []Payload) error {
	rs, ok := rules[ruleKey{e, response}]
	if !ok || !rs.encrypted {
		return syntaxError("no protected payloads in %v", e)
	}
	return check(rs, ps)
}

type verifier interface{ verify() error }

func check(rs ruleSet, ps []Payload) error {
	var count [256]uint8
	for _, p := range ps {
		if _, ok := p.(*Unknown); ok {
			continue
		}
		t := p.Type()
		if count[t] < 255 {
			count[t]++
		}
		if v, ok := p.(verifier); ok {
			if err := v.verify(); err != nil {
				return err
			}
		}
	}
	allowed := 0
	for _, r := range rs.rules {
		c := int(count[r.t])
		if c < r.min || c > r.max {
			return syntaxError("%d %v payloads, want %d to %d", c, r.t, r.min, r.max)
		}
		allowed += c
	}
	known := 0
	for _, c := range count {
		known += int(c)
	}
	if known != allowed {
		for t, c := range count {
			if c != 0 && !rs.allows(PayloadType(t)) {
				return syntaxError("payload %v not allowed here", PayloadType(t))
			}
		}
	}
	if rs.whole != nil {
		return rs.whole(ps)
	}
	return nil
}

func (rs ruleSet) allows(t PayloadType) bool {
	for _, r := range rs.rules {
		if r.t == t {
			return true
		}
	}
	return false
}

// hasErrorOrCookie reports whether ps carries an error notify or COOKIE, the
// responses that replace the normal payloads.
func hasErrorOrCookie(ps []Payload) bool {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && (n.NotifyType.IsError() || n.NotifyType == NotifyCookie) {
			return true
		}
	}
	return false
}

func requireUnlessNotify(ts ...PayloadType) func([]Payload) error {
	return func(ps []Payload) error {
		if hasErrorOrCookie(ps) {
			return nil
		}
		for _, t := range ts {
			if Find(ps, t) == nil {
				return syntaxError("missing %v", t)
			}
		}
		return nil
	}
}

func allOrNone(ts ...PayloadType) func([]Payload) error {
	return func(ps []Payload) error {
		n := 0
		for _, t := range ts {
			if Find(ps, t) != nil {
				n++
			}
		}
		if n != 0 && n != len(ts) {
			return syntaxError("%v must come together", ts)
		}
		return nil
	}
}

func both(a, b func([]Payload) error) func([]Payload) error {
	return func(ps []Payload) error {
		if err := a(ps); err != nil {
			return err
		}
		return b(ps)
	}
}
