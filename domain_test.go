package tokenrevoke

// fakeLink stands in for NATS in tests of the plugin's reaction to link state.
type fakeLink struct {
	isSynced bool
	err      error
	sent     []revocation
}

func (f *fakeLink) publish(r revocation) error {
	if f.err != nil {
		return f.err
	}
	f.sent = append(f.sent, r)
	return nil
}
func (f *fakeLink) synced() bool { return f.isSynced }
func (f *fakeLink) status() linkStatus {
	return linkStatus{Connected: true, Stream: "REVOCATIONS", StreamSeq: 7, Synced: f.isSynced}
}
