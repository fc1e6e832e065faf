package tokenrevoke

import "errors"

// startNATSLink connects a domain to NATS. (Implemented with the natsclient package.)
func startNATSLink(d *domain, n *natsSettings, log *logger) (link, error) {
	return nil, errors.New("tokenrevoke: nats: not implemented yet")
}
