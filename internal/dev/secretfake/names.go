package secretfake

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits and patterns below come from the field comments of
// google.cloud.secretmanager.v1 (resources.proto and service.proto) and from
// Secret Manager's documented quotas.
const (
	maxPayloadBytes       = 64 * 1024
	maxLabels             = 64
	maxLabelBytes         = 128
	maxAnnotationKeyBytes = 128
	maxAnnotationsBytes   = 16 * 1024
)

var (
	secretIDPattern      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	labelKeyPattern      = regexp.MustCompile(`^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$`)
	labelValuePattern    = regexp.MustCompile(`^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$`)
	annotationKeyPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
)

// Google answers a missing secret with this shape on every secret-level call,
// including AccessSecretVersion on a secret that has no versions yet.
func errSecretNotFound(secretName string) error {
	return status.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", secretName)
}

func errVersionNotFound(versionName string) error {
	return status.Errorf(codes.NotFound, "Secret Version [%s] not found.", versionName)
}

func errVersionState(versionName string, state secretmanagerpb.SecretVersion_State) error {
	return status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in %s state.", versionName, state)
}

func errAlreadyExists(secretName string) error {
	return status.Errorf(codes.AlreadyExists, "Secret [%s] already exists.", secretName)
}

func errRequired(field string) error {
	return status.Errorf(codes.InvalidArgument, "Field [%s] is required.", field)
}

func errEtagMismatch(name string) error {
	return status.Errorf(codes.FailedPrecondition, "The etag provided in the request does not match the current etag of [%s].", name)
}

func errRegional(name string) error {
	return status.Errorf(codes.Unimplemented, "secretfake: regional resources (%s) are not supported; use projects/*/secrets/*", name)
}

// parseParent accepts projects/P and returns P.
func parseParent(parent string) (string, error) {
	if parent == "" {
		return "", errRequired("parent")
	}
	parts := strings.Split(parent, "/")
	if len(parts) >= 3 && parts[0] == "projects" && parts[2] == "locations" {
		return "", errRegional(parent)
	}
	if len(parts) != 2 || parts[0] != "projects" || parts[1] == "" {
		return "", status.Errorf(codes.InvalidArgument, "Invalid parent [%s]; expected projects/*.", parent)
	}
	return parts[1], nil
}

// parseSecretName accepts projects/P/secrets/S.
func parseSecretName(name string) (project, secretID string, err error) {
	if name == "" {
		return "", "", errRequired("name")
	}
	parts := strings.Split(name, "/")
	if len(parts) >= 3 && parts[0] == "projects" && parts[2] == "locations" {
		return "", "", errRegional(name)
	}
	if len(parts) != 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != "secrets" || parts[3] == "" {
		return "", "", status.Errorf(codes.InvalidArgument, "Invalid resource name [%s]; expected projects/*/secrets/*.", name)
	}
	return parts[1], parts[3], nil
}

// parseVersionName accepts projects/P/secrets/S/versions/V and returns the
// secret's name and V, which may be a number, "latest" or an alias.
func parseVersionName(name string) (secretName, version string, err error) {
	if name == "" {
		return "", "", errRequired("name")
	}
	parts := strings.Split(name, "/")
	if len(parts) >= 3 && parts[0] == "projects" && parts[2] == "locations" {
		return "", "", errRegional(name)
	}
	if len(parts) != 6 || parts[0] != "projects" || parts[1] == "" || parts[2] != "secrets" ||
		parts[3] == "" || parts[4] != "versions" || parts[5] == "" {
		return "", "", status.Errorf(codes.InvalidArgument, "Invalid resource name [%s]; expected projects/*/secrets/*/versions/*.", name)
	}
	return strings.Join(parts[:4], "/"), parts[5], nil
}

func secretName(project, secretID string) string {
	return "projects/" + project + "/secrets/" + secretID
}

func versionName(secret string, n int64) string {
	return secret + "/versions/" + strconv.FormatInt(n, 10)
}

func validateSecretID(id string) error {
	if id == "" {
		return errRequired("secret_id")
	}
	if !secretIDPattern.MatchString(id) {
		return status.Errorf(codes.InvalidArgument,
			"Invalid secret_id [%s]: a secret ID is 1 to 255 characters of letters, digits, hyphens (-) and underscores (_).", truncate(id, 300))
	}
	return nil
}

func validateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return status.Errorf(codes.InvalidArgument, "Too many labels: %d; at most %d are allowed.", len(labels), maxLabels)
	}
	for k, v := range labels {
		if len(k) > maxLabelBytes || !utf8.ValidString(k) || !labelKeyPattern.MatchString(k) {
			return status.Errorf(codes.InvalidArgument,
				"Invalid label key [%s]: keys start with a lowercase letter and hold at most 63 lowercase letters, digits, underscores and hyphens.", truncate(k, 200))
		}
		if len(v) > maxLabelBytes || !utf8.ValidString(v) || !labelValuePattern.MatchString(v) {
			return status.Errorf(codes.InvalidArgument,
				"Invalid value for label [%s]: values hold at most 63 lowercase letters, digits, underscores and hyphens.", k)
		}
	}
	return nil
}

func validateAnnotations(annotations map[string]string) error {
	total := 0
	for k, v := range annotations {
		if len(k) > maxAnnotationKeyBytes || !annotationKeyPattern.MatchString(k) {
			return status.Errorf(codes.InvalidArgument,
				"Invalid annotation key [%s]: keys are 1 to 63 characters, begin and end with a letter or digit, and may hold hyphens, underscores and dots in between.", truncate(k, 200))
		}
		total += len(k) + len(v)
	}
	if total >= maxAnnotationsBytes {
		return status.Errorf(codes.InvalidArgument, "Annotations are %d bytes in total; they must be less than %d bytes.", total, maxAnnotationsBytes)
	}
	return nil
}

func validateReplication(r *secretmanagerpb.Replication) error {
	switch rep := r.GetReplication().(type) {
	case *secretmanagerpb.Replication_Automatic_:
		return nil
	case *secretmanagerpb.Replication_UserManaged_:
		replicas := rep.UserManaged.GetReplicas()
		if len(replicas) == 0 {
			return errRequired("secret.replication.user_managed.replicas")
		}
		seen := make(map[string]bool, len(replicas))
		for _, r := range replicas {
			loc := r.GetLocation()
			if loc == "" {
				return errRequired("secret.replication.user_managed.replicas.location")
			}
			if seen[loc] {
				return status.Errorf(codes.InvalidArgument, "Duplicate replica location [%s].", loc)
			}
			seen[loc] = true
		}
		return nil
	default:
		return errRequired("secret.replication")
	}
}

func replicationStatus(r *secretmanagerpb.Replication) *secretmanagerpb.ReplicationStatus {
	if um, ok := r.GetReplication().(*secretmanagerpb.Replication_UserManaged_); ok {
		var replicas []*secretmanagerpb.ReplicationStatus_UserManagedStatus_ReplicaStatus
		for _, r := range um.UserManaged.GetReplicas() {
			replicas = append(replicas, &secretmanagerpb.ReplicationStatus_UserManagedStatus_ReplicaStatus{Location: r.GetLocation()})
		}
		return &secretmanagerpb.ReplicationStatus{
			ReplicationStatus: &secretmanagerpb.ReplicationStatus_UserManaged{
				UserManaged: &secretmanagerpb.ReplicationStatus_UserManagedStatus{Replicas: replicas},
			},
		}
	}
	return &secretmanagerpb.ReplicationStatus{
		ReplicationStatus: &secretmanagerpb.ReplicationStatus_Automatic{
			Automatic: &secretmanagerpb.ReplicationStatus_AutomaticStatus{},
		},
	}
}

// truncate keeps error messages bounded when a caller sends a huge value.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:n], len(s))
}
