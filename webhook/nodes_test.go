package webhook

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// Rule B2 reads status.nodes in one pass and reads again only the nodes the incomplete entries
// name, so it must decline (allow, no patch) whenever a node ID may not name one node, and
// answer 400 whenever a field it reads has the wrong type, on any node, as the reader that
// decoded every node did. Each row is the stuck shape of stuckWorkflowObject with its nodes
// written as raw JSON (duplicate keys and escapes cannot be written through a Go map).
func TestWorkflowHandlerReadsEveryNodeStrictly(t *testing.T) {
	const (
		steps   = `{"id":"wf","type":"Steps","phase":"Succeeded","startedAt":"2024-04-26T10:50:27Z","finishedAt":"2024-04-26T10:50:45Z","children":["wf-3571860313"]}`
		pod     = `{"id":"wf-3571860313","type":"Pod","phase":"Succeeded","startedAt":"2024-04-26T10:50:27Z","finishedAt":"2024-04-26T10:50:41Z","outputs":{"exitCode":"0"}}`
		running = `{"id":"wf-3571860313","type":"Pod","phase":"Running","startedAt":"2024-04-26T10:50:27Z"}`
	)
	inline := func(nodes string) func(map[string]any) {
		return func(wf map[string]any) { status(wf)["nodes"] = json.RawMessage(nodes) }
	}
	compressed := func(nodes string) func(map[string]any) {
		return func(wf map[string]any) {
			delete(status(wf), "nodes")
			status(wf)["compressedNodes"] = gzipBase64(t, nodes)
		}
	}
	cases := map[string]struct {
		mod     func(map[string]any)
		code    int
		patched bool
		message string // of a 400
	}{
		"the stuck shape written raw is patched (reference row)": {
			mod: inline(`{"wf":` + steps + `,"wf-3571860313":` + pod + `}`), code: 200, patched: true,
		},
		"startedAt null on any node is read as absent and patched": {
			mod: inline(`{"wf":{"type":"Steps","phase":"Succeeded","startedAt":null,"finishedAt":"2024-04-26T10:50:45Z"},"wf-3571860313":` + pod + `}`), code: 200, patched: true,
		},
		"the stuck shape written raw in compressedNodes is patched (reference row)": {
			mod: compressed(`{"wf":` + steps + `,"wf-3571860313":` + pod + `}`), code: 200, patched: true,
		},
		"a node ID that appears twice in a row is declined": {
			mod: inline(`{"wf":` + steps + `,"wf-3571860313":` + running + `,"wf-3571860313":` + pod + `}`), code: 200,
		},
		"a node ID that appears twice apart (unsorted) is declined": {
			mod: inline(`{"wf-3571860313":` + running + `,"wf":` + steps + `,"wf-3571860313":` + pod + `}`), code: 200,
		},
		"a node ID that appears twice with the same node is declined": {
			mod: inline(`{"wf":` + steps + `,"wf-3571860313":` + pod + `,"wf-3571860313":` + pod + `}`), code: 200,
		},
		"a node ID that appears twice in compressedNodes is declined": {
			mod: compressed(`{"wf-3571860313":` + running + `,"wf":` + steps + `,"wf-3571860313":` + pod + `}`), code: 200,
		},
		"the incomplete entry's node ID written with an escape sequence is declined": {
			mod: inline(`{"wf":` + steps + `,"wf\u002d3571860313":` + pod + `}`), code: 200,
		},
		"another node's ID written with an escape sequence is declined": {
			mod: inline(`{"w\u0066":` + steps + `,"wf-3571860313":` + pod + `}`), code: 200,
		},
		"an incomplete entry naming a node absent from status.nodes is declined": {
			mod: inline(`{"wf":` + steps + `,"wf-2":{"type":"Pod","phase":"Succeeded","finishedAt":"2024-04-26T10:50:41Z"}}`), code: 200,
		},
		"nodes: null is declined": {
			mod: inline(`null`), code: 200,
		},
		"startedAt not a string on a node no incomplete entry names is a bad request": {
			mod:  inline(`{"wf":{"type":"Steps","phase":"Succeeded","startedAt":5,"finishedAt":"2024-04-26T10:50:45Z"},"wf-3571860313":` + pod + `}`),
			code: 400, message: "expected a string",
		},
		"startedAt an object on a node no incomplete entry names is a bad request": {
			mod:  inline(`{"wf":{"type":"Steps","phase":"Succeeded","startedAt":{},"finishedAt":"2024-04-26T10:50:45Z"},"wf-3571860313":` + pod + `}`),
			code: 400, message: "expected a string",
		},
		"startedAt not a string on the incomplete entry's node is a bad request": {
			mod:  inline(`{"wf":` + steps + `,"wf-3571860313":{"type":"Pod","phase":"Succeeded","startedAt":true,"finishedAt":"2024-04-26T10:50:41Z"}}`),
			code: 400, message: "expected a string",
		},
		"startedAt not a string in compressedNodes is declined": {
			mod: compressed(`{"wf":{"type":"Steps","phase":"Succeeded","startedAt":5},"wf-3571860313":` + pod + `}`), code: 200,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := NewWorkflowHandler(HandlerOptions{Pods: &podTable{}, TaskResults: storedTaskResult12985(), Log: testr.New(t)})
			body := reviewJSON(t, "Workflow", rules.OperationUpdate, stuckWorkflowObject(tc.mod), stuckWorkflowObject(nil))
			code, resp := serveReview(t, h, body)
			assert.Equal(t, tc.code, code)
			assert.Equal(t, "c0ffee", string(resp.UID))
			if tc.patched {
				assert.NotEmpty(t, patchOf(t, resp))
			} else {
				assert.Empty(t, string(resp.Patch), "no patch")
				assert.Nil(t, resp.PatchType)
			}
			if tc.code != http.StatusOK {
				require.NotNil(t, resp.Result)
				assert.Contains(t, resp.Result.Message, "request.object.status is not a Workflow status")
				assert.Contains(t, resp.Result.Message, tc.message)
			}
		})
	}
}

// gzipBase64 is raw JSON as Argo stores status.compressedNodes, written as given (compress
// marshals a value, which cannot hold duplicate keys).
func gzipBase64(t *testing.T, raw string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write([]byte(raw))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}
