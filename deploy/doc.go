// Package deploy holds no runtime code: its tests check that the deployment files beside it
// (docker-compose, Kubernetes manifests, dashboards) parse and agree with what the binaries accept.
package deploy
