//go:build deps

// Package deps pins the modules the project builds on while packages that
// import them are written; go mod tidy keeps what this file imports.
package deps

import (
	_ "cloud.google.com/go/firestore"
	_ "cloud.google.com/go/pubsub/v2"
	_ "cloud.google.com/go/pubsub/v2/pstest"
	_ "cloud.google.com/go/secretmanager/apiv1"
	_ "github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	_ "github.com/GoogleCloudPlatform/functions-framework-go/functions"
	_ "github.com/chromedp/chromedp"
	_ "github.com/cloudevents/sdk-go/v2/event"
	_ "github.com/emersion/go-message/mail"
	_ "github.com/hashicorp/hcl/v2/hclparse"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/sethvargo/go-envconfig"
	_ "golang.org/x/oauth2"
	_ "golang.org/x/sync/singleflight"
	_ "google.golang.org/api/gmail/v1"
)
