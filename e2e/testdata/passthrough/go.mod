module github.com/tokenrevoke/passthrough

go 1.22
