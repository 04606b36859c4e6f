module github.com/bulwarkhq/bulwark/tools/manifests

go 1.26.8
