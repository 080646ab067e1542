package rules

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gzipBase64 is how Argo's packer stores compressedNodes.
func gzipBase64(t *testing.T, data []byte) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestParseWorkflowStatus(t *testing.T) {
	nodes := `{"wf-1":{"type":"Pod","phase":"Succeeded","startedAt":"2024-04-26T10:50:30Z","finishedAt":"2024-04-26T10:50:41Z",` +
		`"taskResultSynced":false,"outputs":{"parameters":[{"name":"p","value":"v"}]}},"wf-2":{"type":"Pod","phase":"Running","outputs":null}}`
	synced := false
	wantNodes := map[string]Node{
		"wf-1": {Type: "Pod", Phase: "Succeeded", StartedAt: "2024-04-26T10:50:30Z", FinishedAt: "2024-04-26T10:50:41Z",
			TaskResultSynced: &synced, Outputs: json.RawMessage(`{"parameters":[{"name":"p","value":"v"}]}`)},
		"wf-2": {Type: "Pod", Phase: "Running"},
	}
	cases := map[string]struct {
		status  string
		want    Workflow
		wantErr string
	}{
		"reads phase, finishedAt, nodes and the completion map": {
			status: `{"phase":"Succeeded","finishedAt":null,"nodes":` + nodes + `,"taskResultsCompletionStatus":{"wf-1":false,"wf-2":true}}`,
			want:   Workflow{Phase: "Succeeded", Nodes: wantNodes, TaskResultsCompletion: map[string]bool{"wf-1": false, "wf-2": true}},
		},
		"decodes compressedNodes": {
			status: `{"phase":"Running","finishedAt":"2024-04-26T10:50:48Z","compressedNodes":"` + gzipBase64(t, []byte(nodes)) + `"}`,
			want:   Workflow{Phase: "Running", FinishedAt: "2024-04-26T10:50:48Z", Nodes: wantNodes},
		},
		"offloaded nodes are unreadable, with the version": {
			status: `{"phase":"Running","offloadNodeStatusVersion":"fnv:123"}`,
			want:   Workflow{Phase: "Running", NodesUnreadable: "offloaded to the persistence database (offloadNodeStatusVersion fnv:123)"},
		},
		"corrupt compressedNodes are unreadable, with the reason": {
			status: `{"compressedNodes":"%%%"}`,
			want:   Workflow{NodesUnreadable: "compressedNodes: not base64: illegal base64 data at input byte 0"},
		},
		"compressed data that is not gzip is unreadable": {
			status: `{"compressedNodes":"` + base64.StdEncoding.EncodeToString([]byte("plain")) + `"}`,
			want:   Workflow{NodesUnreadable: "compressedNodes: not gzip: unexpected EOF"},
		},
		"null nodes read as none, an empty map as absent": {
			status: `{"nodes":null,"taskResultsCompletionStatus":{}}`,
			want:   Workflow{Nodes: map[string]Node{}},
		},
		"no status reads as nothing": {status: `null`},
		"a status that is not an object is an error": {
			status: `{"phase":1}`, wantErr: "request.object.status is not a Workflow status",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseWorkflowStatus([]byte(tc.status))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestDecompressNodesBoundsGzipBombs(t *testing.T) {
	// 80 MiB of spaces compresses to ~80 KiB: more than MaxNodesBytes once inflated.
	_, err := DecompressNodes(gzipBase64(t, []byte(strings.Repeat(" ", 80<<20))))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 67108864 bytes uncompressed")
}
