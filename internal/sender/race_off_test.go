//go:build !race

package sender_test

const raceBuild = false
