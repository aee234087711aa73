package lab

import (
	"net/netip"
	"time"
)

// The daemons' status views as their sockets send them (`status -json`):
// the fields the lab reads, decoded from the JSON the daemons write
// (package hub: GroupView, SAView, CPEView; package cpe: Status). The lab
// talks to the daemons only through their sockets, like an operator's
// tools would; TestViewsContract checks these against the daemons' types.

// HubGroups is the hub's `groups` view.
type HubGroups struct {
	Now    time.Time  `json:"now"`
	Groups []HubGroup `json:"groups"`
}

// HubGroup is one MPSA group at the hub.
type HubGroup struct {
	Name        string     `json:"name"`
	Suite       string     `json:"suite"`
	Provisioned int        `json:"provisioned"`
	Connected   int        `json:"connected"`
	OnCurrent   int        `json:"on_current"`
	Epoch       uint64     `json:"epoch"`
	SPI         string     `json:"spi"`
	Epochs      []HubEpoch `json:"epochs"`
}

// HubEpoch is one live generation of a group SA.
type HubEpoch struct {
	Epoch uint64 `json:"epoch"`
	SPI   string `json:"spi"`
	Sent  int    `json:"sent"`
	Acked int    `json:"acked"`
}

// HubSAs is the hub's `sas` view.
type HubSAs struct {
	SAs []HubSA `json:"sas"`
}

// HubSA is one CPE's IKE SA at the hub.
type HubSA struct {
	CPE        string       `json:"cpe"`
	Group      string       `json:"group"`
	State      string       `json:"state"`
	SPIi       string       `json:"spi_i"`
	SPIr       string       `json:"spi_r"`
	Remote     string       `json:"remote"`
	RemoteID   string       `json:"remote_id"`
	Overlay    []string     `json:"overlay"`
	AckedEpoch uint64       `json:"acked_epoch"`
	Children   []HubChildSA `json:"children"`
}

// HubChildSA is one CHILD_SA at the hub.
type HubChildSA struct {
	InSPI  string `json:"in_spi"`
	OutSPI string `json:"out_spi"`
	Encap  bool   `json:"encap"`
}

// HubCPEs is the hub's `cpes` view: the provisioned CPEs.
type HubCPEs struct {
	CPEs []HubCPE `json:"cpes"`
}

// HubCPE is one provisioned CPE at the hub.
type HubCPE struct {
	Name       string   `json:"name"`
	Group      string   `json:"group"`
	State      string   `json:"state"` // CONNECTED or DOWN
	Overlay    []string `json:"overlay"`
	Endpoint   string   `json:"endpoint"`
	AckedEpoch uint64   `json:"acked_epoch"`
}

// CPEStatus is a CPE's `overview` view.
type CPEStatus struct {
	Identity  string         `json:"identity"`
	Phase     string         `json:"phase"`
	LastError string         `json:"last_error"`
	IKE       []CPEIKE       `json:"ike"`
	Tunnel    CPETunnel      `json:"tunnel"`
	Group     CPEGroup       `json:"group"`
	BGP       CPEBGP         `json:"bgp"`
	Dataplane map[string]any `json:"dataplane"`
}

// CPEIKE is the CPE's IKE SA with the hub.
type CPEIKE struct {
	SPIi     string         `json:"ike_spi_i"`
	SPIr     string         `json:"ike_spi_r"`
	State    string         `json:"state"`
	Local    netip.AddrPort `json:"local"`
	Remote   netip.AddrPort `json:"remote"`
	Children []CPEChildSA   `json:"children"`
}

// CPEChildSA is the CPE's CHILD_SA with the hub.
type CPEChildSA struct {
	InSPI  string `json:"in_spi"`
	OutSPI string `json:"out_spi"`
}

// CPETunnel is the CPE's path to the hub.
type CPETunnel struct {
	Up         bool           `json:"up"`
	Overlay    netip.Addr     `json:"overlay"`
	HubOverlay netip.Addr     `json:"hub_overlay"`
	Endpoint   netip.AddrPort `json:"endpoint"`
}

// CPEGroup is the group SA as the CPE holds it.
type CPEGroup struct {
	SAs   []CPEGroupSA `json:"sas"`   // oldest first
	Phase string       `json:"phase"` // none, steady, roll1, roll2
}

// CPEGroupSA is one group SA at the CPE.
type CPEGroupSA struct {
	SPI      string `json:"spi"`
	Suite    string `json:"suite"`
	Outbound bool   `json:"outbound"`
}

// CPEBGP is the CPE's BGP session with the route reflector.
type CPEBGP struct {
	State  string `json:"state"`
	Routes int    `json:"routes"`
	Stale  int    `json:"stale"`
	Stats  struct {
		Established uint64
	} `json:"stats"`
}

// HubRekey is the hub's answer to `rekey GROUP`.
type HubRekey struct {
	Group     string `json:"group"`
	Epoch     uint64 `json:"epoch"`
	SPI       string `json:"spi"`
	Connected int    `json:"connected"`
}
