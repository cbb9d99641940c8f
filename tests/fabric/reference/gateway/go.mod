module example.com/refgw

go 1.22.0

require github.com/hyperledger/fabric-gateway v1.7.0
