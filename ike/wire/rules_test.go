package wire

import (
	"net/netip"
	"testing"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func nonce() *Nonce { return &Nonce{Data: make([]byte, 32)} }

func TestRules(t *testing.T) {
	sa := &SA{Proposals: []Proposal{{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{NewTransform(1, 20, 128)}}}}
	ke := &KE{Group: 19, Data: make([]byte, 64)}
	ts := func(r bool) *TS {
		return &TS{Responder: r, Selectors: []Selector{SelectorFromPrefix(mustPrefix("10.0.0.0/8"))}}
	}
	idi := &ID{IDType: IDFQDN, Data: []byte("a")}
	idr := &ID{Responder: true, IDType: IDFQDN, Data: []byte("b")}
	auth := &Auth{Method: AuthPSK, Data: make([]byte, 32)}
	n := func(t NotifyType) *Notify { return &Notify{NotifyType: t} }
	tests := []struct {
		name     string
		ex       ExchangeType
		response bool
		ps       []Payload
		ok       bool
	}{
		{"init request", IKESAInit, false, []Payload{sa, ke, nonce(), n(NotifyNATDetectionSourceIP), &Vendor{Data: []byte{1}}}, true},
		{"init request with cookie", IKESAInit, false, []Payload{n(NotifyCookie), sa, ke, nonce()}, true},
		{"init request without KE", IKESAInit, false, []Payload{sa, nonce()}, false},
		{"init request with two SAs", IKESAInit, false, []Payload{sa, sa, ke, nonce()}, false},
		{"init request with AUTH", IKESAInit, false, []Payload{sa, ke, nonce(), auth}, false},
		{"init request short nonce", IKESAInit, false, []Payload{sa, ke, &Nonce{Data: make([]byte, 15)}}, false},
		{"init response", IKESAInit, true, []Payload{sa, ke, nonce(), &CertReq{Encoding: CertX509Signature}}, true},
		{"init response INVALID_KE", IKESAInit, true, []Payload{&Notify{NotifyType: NotifyInvalidKEPayload, Data: []byte{0, 19}}}, true},
		{"init response COOKIE", IKESAInit, true, []Payload{n(NotifyCookie)}, true},
		{"init response without notify or SA", IKESAInit, true, []Payload{n(NotifyNATDetectionSourceIP)}, false},
		{"init response notify protocol 4", IKESAInit, true, []Payload{&Notify{Protocol: 4, NotifyType: NotifyCookie}}, false},
		{"auth request", IKEAuth, false, []Payload{idi, auth, sa, ts(false), ts(true)}, true},
		{"auth request childless", IKEAuth, false, []Payload{idi, idr, auth, n(NotifyInitialContact)}, true},
		{"auth request SA without TS", IKEAuth, false, []Payload{idi, auth, sa}, false},
		{"auth request without AUTH", IKEAuth, false, []Payload{idi, sa, ts(false), ts(true)}, false},
		{"auth request with KE", IKEAuth, false, []Payload{idi, auth, ke}, false},
		{"auth response", IKEAuth, true, []Payload{idr, auth, &CP{CfgType: CfgReply}, sa, ts(false), ts(true)}, true},
		{"auth response failure", IKEAuth, true, []Payload{n(NotifyAuthenticationFailed)}, true},
		{"auth response without AUTH", IKEAuth, true, []Payload{idr}, false},
		{"child request", CreateChildSA, false, []Payload{sa, nonce(), ke, ts(false), ts(true)}, true},
		{"IKE rekey request", CreateChildSA, false, []Payload{sa, nonce(), ke}, true},
		{"child request one TS", CreateChildSA, false, []Payload{sa, nonce(), ts(false)}, false},
		{"child response", CreateChildSA, true, []Payload{sa, nonce(), ts(false), ts(true)}, true},
		{"child response NO_ADDITIONAL_SAS", CreateChildSA, true, []Payload{n(NotifyNoAdditionalSAs)}, true},
		{"child response empty", CreateChildSA, true, nil, false},
		{"informational empty", Informational, false, nil, true},
		{"informational delete", Informational, false, []Payload{&Delete{Protocol: ProtoESP, SPIs: []uint32{1}}}, true},
		{"informational with SA", Informational, true, []Payload{sa}, false},
		{"unknown payload ignored", Informational, true, []Payload{&Unknown{PType: 200}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if IsProtected(tt.ex) {
				err = CheckInner(tt.ex, tt.response, tt.ps)
			} else {
				flags := FlagInitiator
				if tt.response {
					flags = FlagResponse
				}
				err = CheckOuter(&Message{Header: hdr(tt.ex, flags), Payloads: tt.ps})
			}
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if ne, ok := AsNotifyError(err); !ok || ne.Type != NotifyInvalidSyntax {
					t.Fatalf("error %v is not INVALID_SYNTAX", err)
				}
			}
		})
	}
}

func TestCheckOuterProtected(t *testing.T) {
	for _, tt := range []struct {
		name string
		ps   []Payload
		ok   bool
	}{
		{"SK", []Payload{&Encrypted{Inner: PayloadN}}, true},
		{"SKF", []Payload{&Fragment{Number: 1, Total: 2}}, true},
		{"plain notify", []Payload{&Notify{NotifyType: NotifyInitialContact}}, false},
		{"nothing", nil, false},
	} {
		err := CheckOuter(&Message{Header: hdr(IKEAuth, FlagInitiator), Payloads: tt.ps})
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if err := CheckOuter(&Message{Header: hdr(99, 0)}); err == nil {
		t.Error("unknown exchange accepted")
	}
	if err := CheckOuter(&Message{Header: hdr(IKESAInit, FlagInitiator), Payloads: []Payload{&Encrypted{}}}); err == nil {
		t.Error("SK in IKE_SA_INIT accepted")
	}
}
