module github.com/tokenrevoke/tokenrevoke

go 1.22
