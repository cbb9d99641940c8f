package main

import (
	"os"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/statebased"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

type cc struct{}

func (c *cc) Init(stub shim.ChaincodeStubInterface) *peer.Response { return shim.Success(nil) }

func (c *cc) Invoke(stub shim.ChaincodeStubInterface) *peer.Response {
	fn, args := stub.GetFunctionAndParameters()
	switch fn {
	case "put":
		if err := stub.PutState(args[0], []byte(args[1])); err != nil {
			return shim.Error(err.Error())
		}
		stub.SetEvent("Put", []byte(args[0]))
		return shim.Success([]byte("ok"))
	case "del":
		if err := stub.DelState(args[0]); err != nil {
			return shim.Error(err.Error())
		}
		return shim.Success([]byte("ok"))
	case "get":
		v, err := stub.GetState(args[0])
		if err != nil {
			return shim.Error(err.Error())
		}
		if v == nil {
			return shim.Success([]byte("<none>"))
		}
		return shim.Success(v)
	case "range":
		it, err := stub.GetStateByRange(args[0], args[1])
		if err != nil {
			return shim.Error(err.Error())
		}
		defer it.Close()
		out := ""
		for it.HasNext() {
			kv, err := it.Next()
			if err != nil {
				return shim.Error(err.Error())
			}
			out += kv.Key + "=" + string(kv.Value) + ";"
		}
		return shim.Success([]byte(out))
	case "endorse":
		ep, err := statebased.NewStateEP(nil)
		if err != nil {
			return shim.Error(err.Error())
		}
		if err := ep.AddOrgs(statebased.RoleTypePeer, args[1:]...); err != nil {
			return shim.Error(err.Error())
		}
		pol, err := ep.Policy()
		if err != nil {
			return shim.Error(err.Error())
		}
		if err := stub.SetStateValidationParameter(args[0], pol); err != nil {
			return shim.Error(err.Error())
		}
		return shim.Success(pol)
	case "refuse":
		return &peer.Response{Status: 409, Message: "refused"}
	}
	return shim.Error("unknown " + fn)
}

func main() {
	server := &shim.ChaincodeServer{
		CCID:     os.Getenv("CHAINCODE_ID"),
		Address:  os.Getenv("CHAINCODE_SERVER_ADDRESS"),
		CC:       &cc{},
		TLSProps: shim.TLSProperties{Disabled: true},
	}
	if err := server.Start(); err != nil {
		os.Exit(1)
	}
}
