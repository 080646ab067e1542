// Package readerbench compares ways of reading what rule B2 needs from a 2.2 MB Workflow UPDATE
// review (the labels, every node's type/phase/finishedAt/daemoned, taskResultsCompletionStatus):
// the handler's own one-pass scanner (through the real handler), tidwall/gjson and
// buger/jsonparser, each with and without checking that the whole body is well-formed JSON.
package readerbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/buger/jsonparser"
	"github.com/go-logr/logr"
	"github.com/tidwall/gjson"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

type noPods struct{}

func (noPods) PodForNode(context.Context, string, string, string) (*rules.Pod, error) {
	return nil, nil
}

// review builds the UPDATE review of a Workflow with n finished Pod nodes in the v3.5.4 stuck shape.
func review(n int) []byte {
	const wf = "fanout-x7k2p"
	nodes := map[string]any{}
	done := map[string]any{}
	for i := range n {
		id := fmt.Sprintf("%s-%d", wf, 1000000000+i*7919)
		nodes[id] = map[string]any{"id": id, "name": fmt.Sprintf("%s[0].fanout(%d)", wf, i), "displayName": fmt.Sprintf("fanout(%d)", i),
			"type": "Pod", "templateName": "process", "templateScope": "local/" + wf, "phase": "Succeeded", "boundaryID": wf,
			"startedAt": "2024-04-26T10:50:27Z", "finishedAt": "2024-04-26T10:51:00Z", "progress": "1/1",
			"resourcesDuration": map[string]any{"cpu": 3, "memory": 27},
			"inputs":            map[string]any{"parameters": []any{map[string]any{"name": "item", "value": fmt.Sprint(i)}}},
			"outputs":           map[string]any{"parameters": []any{map[string]any{"name": "result", "value": fmt.Sprintf("s3://bucket/%d.json", i)}}, "exitCode": "0"},
			"hostNodeName":      fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", i%255, i%7)}
		done[id] = i != 0
	}
	obj := map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": wf, "namespace": "argo", "labels": map[string]any{rules.LabelCompleted: "false", rules.LabelPhase: "Succeeded"}},
		"spec":     map[string]any{"entrypoint": "main"},
		"status":   map[string]any{"phase": "Succeeded", "finishedAt": nil, "nodes": nodes, "taskResultsCompletionStatus": done}}
	b, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
		"uid": "u", "kind": map[string]any{"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"}, "namespace": "argo", "name": wf,
		"operation": "UPDATE", "userInfo": map[string]any{"username": "system:serviceaccount:argo:argo"}, "object": obj, "oldObject": obj}})
	return b
}

type node struct {
	typ, phase, finishedAt string
	daemoned               bool
}

func BenchmarkReaders(b *testing.B) {
	body := review(1700)
	b.Logf("review: %d bytes", len(body))
	h := webhook.NewWorkflowHandler(webhook.HandlerOptions{Pods: noPods{}, Log: logr.Discard(),
		Workflow: rules.WorkflowConfig{ControllerUsernames: []string{"system:serviceaccount:argo:argo"}}})
	b.Run("handler (ours, whole body checked)", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
			if !bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
				b.Fatal("no patch")
			}
		}
	})
	gj := func(b *testing.B, validate bool) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if validate && !gjson.ValidBytes(body) {
				b.Fatal("invalid")
			}
			obj := gjson.GetBytes(body, "request.object")
			labels := map[string]string{}
			obj.Get("metadata.labels").ForEach(func(k, v gjson.Result) bool { labels[k.String()] = v.String(); return true })
			nodes := map[string]node{}
			obj.Get("status.nodes").ForEach(func(k, v gjson.Result) bool {
				r := v.Get("type|phase|finishedAt|daemoned")
				_ = r
				f := v.Map()
				nodes[k.String()] = node{f["type"].String(), f["phase"].String(), f["finishedAt"].String(), f["daemoned"].Bool()}
				return true
			})
			done := map[string]bool{}
			obj.Get("status.taskResultsCompletionStatus").ForEach(func(k, v gjson.Result) bool { done[k.String()] = v.Bool(); return true })
			if len(nodes) != 1700 || labels[rules.LabelCompleted] != "false" {
				b.Fatal("wrong read")
			}
		}
	}
	b.Run("gjson (nothing checked)", func(b *testing.B) { gj(b, false) })
	b.Run("gjson + ValidBytes", func(b *testing.B) { gj(b, true) })
	jp := func(b *testing.B, validate bool) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if validate && !json.Valid(body) {
				b.Fatal("invalid")
			}
			obj, _, _, err := jsonparser.Get(body, "request", "object")
			if err != nil {
				b.Fatal(err)
			}
			labels := map[string]string{}
			_ = jsonparser.ObjectEach(obj, func(k, v []byte, _ jsonparser.ValueType, _ int) error {
				labels[string(k)] = string(v)
				return nil
			}, "metadata", "labels")
			nodes := map[string]node{}
			_ = jsonparser.ObjectEach(obj, func(k, v []byte, _ jsonparser.ValueType, _ int) error {
				var n node
				jsonparser.EachKey(v, func(i int, val []byte, _ jsonparser.ValueType, _ error) {
					switch i {
					case 0:
						n.typ = string(val)
					case 1:
						n.phase = string(val)
					case 2:
						n.finishedAt = string(val)
					case 3:
						n.daemoned = string(val) == "true"
					}
				}, []string{"type"}, []string{"phase"}, []string{"finishedAt"}, []string{"daemoned"})
				nodes[string(k)] = n
				return nil
			}, "status", "nodes")
			if len(nodes) != 1700 || labels[rules.LabelCompleted] != "false" {
				b.Fatal("wrong read")
			}
		}
	}
	b.Run("jsonparser (nothing checked)", func(b *testing.B) { jp(b, false) })
	b.Run("jsonparser + json.Valid", func(b *testing.B) { jp(b, true) })
	b.Run("json.Valid (floor)", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal("invalid")
			}
		}
	})
}
