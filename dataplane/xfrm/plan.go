package xfrm

import (
	"slices"
)

// installed is what the backend has put into the kernel. Its states own
// their key copies, wiped when the state is removed.
type installed struct {
	states   map[stateID]*kstate
	policies map[policyID]pval
}

func newInstalled() *installed {
	return &installed{states: make(map[stateID]*kstate), policies: make(map[policyID]pval)}
}

// plan is the ordered list of changes that turns installed into desired,
// make-before-break: replaced states (delete then add: the kernel cannot
// change a state's keys), new states, new and changed policies (replaced
// in place), stale policies, stale states.
type plan struct {
	replace     []*kstate
	addStates   []*kstate
	policies    []kpolicy
	delPolicies []policyID
	delStates   []stateID
}

func (p *plan) empty() bool {
	return len(p.replace)+len(p.addStates)+len(p.policies)+len(p.delPolicies)+len(p.delStates) == 0
}

func diff(have *installed, want *desired) *plan {
	p := &plan{}
	p.diffStates(have.states, want.states)
	for id, pol := range want.policies {
		if old, ok := have.policies[id]; !ok || old != pol {
			p.policies = append(p.policies, kpolicy{id, pol})
		}
	}
	for id := range have.policies {
		if _, ok := want.policies[id]; !ok {
			p.delPolicies = append(p.delPolicies, id)
		}
	}
	p.sort()
	return p
}

// diffStates adds to p the states that turn have into want: new ones,
// replaced ones (same ID, other contents) and stale ones.
func (p *plan) diffStates(have, want map[stateID]*kstate) {
	for id, s := range want {
		old, ok := have[id]
		switch {
		case !ok:
			p.addStates = append(p.addStates, s)
		case !old.same(s):
			p.replace = append(p.replace, s)
		}
	}
	for id := range have {
		if _, ok := want[id]; !ok {
			p.delStates = append(p.delStates, id)
		}
	}
}

// sort puts each list of p in a fixed order, so plans are reproducible.
func (p *plan) sort() {
	byState := func(a, b *kstate) int { return a.stateID.compare(b.stateID) }
	slices.SortFunc(p.replace, byState)
	slices.SortFunc(p.addStates, byState)
	slices.SortFunc(p.policies, func(a, b kpolicy) int { return a.policyID.compare(b.policyID) })
	slices.SortFunc(p.delPolicies, policyID.compare)
	slices.SortFunc(p.delStates, stateID.compare)
}
