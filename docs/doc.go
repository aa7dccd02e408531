// Package docs holds the project's documentation; its test checks links and make targets.
package docs
